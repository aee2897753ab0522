"""A LoRA realignment writes the adapter, masks, report and plot; it changes exactly the masked entries of the
patched modules to the reference values, and nothing else."""

from __future__ import annotations

import functools
import json

import pytest
import torch
from safetensors.torch import load_file

from mlflow_nlsr.errors import CalibrationError, NotAContinuationError, OutputExistsError
from mlflow_nlsr.io import read_adapter, sha256_file
from mlflow_nlsr.pipeline import realign
from tests import factories

SCHEMA = {
    "method": str,
    "variant": str,
    "scorer": str,
    "selection": str,
    "seed": int,
    "selection_seed": int,
    "sparsity": float,
    "beta": float,
    "layer_rate": float,
    "epsilon": float,
    "modules": list,
    "inputs": dict,
    "output_sha256": str,
    "package_version": str,
    "seconds": float,
}


def _load(run):
    out = run.output
    return load_file(str(out / "adapter_model.safetensors")), load_file(str(out / "masks.safetensors"))


def test_output_dir_holds_the_adapter_masks_report_plot_and_readme(official_run):
    names = {p.name for p in official_run.output.iterdir()}
    assert names == {
        "adapter_config.json",
        "adapter_model.safetensors",
        "masks.safetensors",
        "nlsr_report.json",
        "similarity.png",
        "README.md",
    }
    assert (official_run.output / "similarity.png").read_bytes()[:4] == b"\x89PNG"
    assert "PeftModel.from_pretrained" in (official_run.output / "README.md").read_text()


def test_report_follows_the_issue_schema(official_run, tiny_adapters):
    report = json.loads((official_run.output / "nlsr_report.json").read_text())
    for key, kind in SCHEMA.items():
        assert isinstance(report[key], kind), key
    assert report == official_run.report
    assert set(report["inputs"]) >= {"base", "aligned", "finetuned"}
    assert all(len(v) == 64 for v in report["inputs"].values())
    assert report["output_sha256"] == sha256_file(official_run.output / "adapter_model.safetensors")
    modules = read_adapter(tiny_adapters[2]).modules
    assert sorted(m["name"] for m in report["modules"]) == sorted(modules)
    for row in report["modules"]:
        assert set(row) == {"name", "similarity", "patched", "mask_density"}
        assert set(row["mask_density"]) == {"lora_A", "lora_B"}
        assert -1.0 <= row["similarity"] <= 1.0
    assert report["patched_modules"] == sum(r["patched"] for r in report["modules"])
    assert report["decisions"]["D1"].startswith("official") and "3.24" in report["decisions"]["D1"]
    assert report["options"]["scorer"] == "actsvd" and report["amplification"] == pytest.approx(3.24)


def test_modules_are_reported_in_model_order(official_run):
    names = [m["name"] for m in official_run.report["modules"]]
    assert names[:7] == [
        f"base_model.model.model.layers.0.{b}.{m}"
        for b, m in [
            ("self_attn", "q_proj"),
            ("self_attn", "k_proj"),
            ("self_attn", "v_proj"),
            ("self_attn", "o_proj"),
            ("mlp", "gate_proj"),
            ("mlp", "up_proj"),
            ("mlp", "down_proj"),
        ]
    ]


def test_mask_keys_are_the_adapter_keys(official_run):
    tensors, masks = _load(official_run)
    assert set(masks) == set(tensors)
    assert all(m.dtype == torch.bool and m.shape == tensors[k].shape for k, m in masks.items())


def test_unpatched_modules_are_bit_identical_to_the_finetuned_adapter(official_run, tiny_adapters):
    tensors, _ = _load(official_run)
    ft = read_adapter(tiny_adapters[2])
    unpatched = [m["name"] for m in official_run.report["modules"] if not m["patched"]]
    assert unpatched, "the fixture should leave some modules unpatched"
    for name in unpatched:
        for f in ("lora_A", "lora_B"):
            key = f"{name}.{f}.weight"
            assert torch.equal(tensors[key], ft.tensors[key])


def test_masked_entries_of_patched_modules_equal_the_reference(official_run, tiny_adapters):
    tensors, masks = _load(official_run)
    al, ft = read_adapter(tiny_adapters[1]), read_adapter(tiny_adapters[2])
    patched = [m["name"] for m in official_run.report["modules"] if m["patched"]]
    assert patched
    for name in patched:
        for f in ("lora_A", "lora_B"):
            key = f"{name}.{f}.weight"
            mask = masks[key]
            assert mask.any()
            assert torch.equal(tensors[key][mask], (al.tensors[key] * 1.8)[mask])
            assert torch.equal(tensors[key][~mask], ft.tensors[key][~mask])


def test_mask_density_is_about_one_minus_sparsity(official_run):
    _, masks = _load(official_run)
    for mask in masks.values():
        assert abs(mask.float().mean().item() - 0.2) < 0.02
    for row in official_run.report["modules"]:
        assert abs(row["mask_density"]["lora_A"] - 0.2) < 0.02


def test_same_inputs_and_seed_give_a_byte_identical_adapter(
    official_run, tiny_adapters, fast_options, tmp_path
):
    base, aligned, finetuned = tiny_adapters
    again = realign(base, aligned, finetuned, tmp_path / "again", fast_options, progress=False)
    for name in ("adapter_model.safetensors", "adapter_config.json", "masks.safetensors"):
        assert (again.output / name).read_bytes() == (official_run.output / name).read_bytes()
    assert again.report["output_sha256"] == official_run.report["output_sha256"]


def test_another_seed_patches_other_modules(official_run, tiny_adapters, fast_options, tmp_path):
    base, aligned, finetuned = tiny_adapters
    other = realign(base, aligned, finetuned, tmp_path / "s7", fast_options.replace(seed=7), progress=False)
    assert [m["patched"] for m in other.report["modules"]] != [
        m["patched"] for m in official_run.report["modules"]
    ]


def test_realigned_adapter_loads_in_peft_on_the_base(official_run, tiny_adapters):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = tiny_adapters[0]
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), official_run.output).eval()
    tensors, _ = _load(official_run)
    key = official_run.report["modules"][0]["name"] + ".lora_A.weight"
    loaded = dict(model.named_parameters())[key.replace(".weight", ".default.weight")]
    assert torch.equal(loaded.detach(), tensors[key])
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([[1, 2, 3]])).logits
    assert torch.isfinite(logits).all()


def test_existing_output_is_refused_before_any_work(official_run, tiny_adapters, fast_options):
    base, aligned, finetuned = tiny_adapters
    before = (official_run.output / "nlsr_report.json").read_bytes()
    with pytest.raises(OutputExistsError):
        realign(base, aligned, finetuned, official_run.output, fast_options, progress=False)
    assert (official_run.output / "nlsr_report.json").read_bytes() == before


def test_bad_calibration_leaves_no_output(tiny_adapters, fast_options, tmp_path):
    base, aligned, finetuned = tiny_adapters
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a", "response": "b"}\nnot json\n')
    with pytest.raises(CalibrationError, match="line 2"):
        realign(base, aligned, finetuned, tmp_path / "out", fast_options.replace(calibration=str(bad)))
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["bad.jsonl"]


def test_fresh_lora_is_refused_unless_forced(tiny_adapters, fast_options, tmp_path):
    base, aligned, _ = tiny_adapters
    fresh = factories.make_lora_adapter(base, tmp_path / "fresh", seed=123)
    opts = fast_options.replace(scorer="magnitude")
    with pytest.raises(NotAContinuationError):
        realign(base, aligned, fresh, tmp_path / "out", opts)
    assert not (tmp_path / "out").exists()
    forced = realign(base, aligned, fresh, tmp_path / "out", opts.replace(force=True), progress=False)
    assert forced.report["continuation_score"] < 0.3


def test_random_scorer_has_the_magnitude_budget_but_other_entries(tiny_adapters, fast_options, tmp_path):
    base, aligned, finetuned = tiny_adapters
    runs = {
        s: realign(
            base,
            aligned,
            finetuned,
            tmp_path / s,
            fast_options.replace(scorer=s, selection="all"),
            progress=False,
        )
        for s in ("magnitude", "random")
    }
    mag = load_file(str(runs["magnitude"].output / "masks.safetensors"))
    rnd = load_file(str(runs["random"].output / "masks.safetensors"))
    assert all(int(mag[k].sum()) == int(rnd[k].sum()) for k in mag)
    assert any(not torch.equal(mag[k], rnd[k]) for k in mag)


def test_paper_variant_masks_rows_and_scales_only_b(tiny_adapters, fast_options, tmp_path):
    base, aligned, finetuned = tiny_adapters
    opts = fast_options.replace(variant="paper", scorer="weight-lowrank", selection="all")
    run = realign(base, aligned, finetuned, tmp_path / "p", opts, progress=False)
    tensors, masks = _load(run)
    al = read_adapter(aligned)
    for key, mask in masks.items():
        per_row = mask.sum(dim=1)
        assert torch.all(per_row == per_row[0])
        scale = 1.9 if ".lora_B." in key else 1.0
        assert torch.allclose(tensors[key][mask], (al.tensors[key] * scale)[mask])
    assert run.report["decisions"]["D1"].startswith("paper") and "D2" in run.report["decisions"]


def test_a_projection_cache_reuses_actsvd_only_when_the_projection_options_match(
    official_run, tiny_adapters, fast_options, tmp_path
):
    from mlflow_nlsr.pipeline.projection_cache import ProjectionCache

    base, aligned, finetuned = tiny_adapters
    cache = ProjectionCache()
    run = functools.partial(realign, base, aligned, finetuned, progress=False)
    first = run(tmp_path / "a", fast_options, projection_cache=cache)
    assert cache.hits == 0
    assert first.report["output_sha256"] == official_run.report["output_sha256"]
    # another module choice on the same projection: reused, and the same output as an uncached run
    patch_all = fast_options.replace(selection="all")
    cached = run(tmp_path / "b", patch_all, projection_cache=cache)
    assert cache.hits == 1
    uncached = run(tmp_path / "c", patch_all)
    assert (cached.output / "adapter_model.safetensors").read_bytes() == (
        uncached.output / "adapter_model.safetensors"
    ).read_bytes()
    assert cached.report["actsvd_data"] == uncached.report["actsvd_data"]
    # another sparsity projects to another rank: computed again
    run(tmp_path / "d", fast_options.replace(sparsity=0.5), projection_cache=cache)
    assert cache.hits == 1


def test_a_selection_seed_redraws_the_modules_and_keeps_the_neurons_and_the_projection(
    tiny_adapters, fast_options, tmp_path
):
    from mlflow_nlsr.pipeline.projection_cache import ProjectionCache

    base, aligned, finetuned = tiny_adapters
    cache = ProjectionCache()
    run = functools.partial(realign, base, aligned, finetuned, progress=False, projection_cache=cache)
    first = run(tmp_path / "s0", fast_options)
    draws = {tuple(m["patched"] for m in first.report["modules"])}
    first_masks = load_file(str(first.output / "masks.safetensors"))
    for draw_seed in range(1, 6):
        other = run(tmp_path / f"s{draw_seed}", fast_options.replace(selection_seed=draw_seed))
        assert (other.report["seed"], other.report["selection_seed"]) == (fast_options.seed, draw_seed)
        masks = load_file(str(other.output / "masks.safetensors"))
        assert all(torch.equal(masks[k], first_masks[k]) for k in masks.keys() & first_masks.keys())
        draws.add(tuple(m["patched"] for m in other.report["modules"]))
    assert cache.hits == 5, "a new module draw reuses the ActSVD projection"
    assert len(draws) > 1, "some selection seed patches other modules"
