"""Full-weight NLSR streamed from sharded checkpoints gives exactly the in-memory algorithm's checkpoint.

Invariants: the output is a loadable sharded HF checkpoint; embeddings, norms, lm_head and unpatched
modules are the fine-tuned tensors bit for bit; in patched modules the masked entries are W_0 + ΔW_e and
the rest is W_t; the streamed result equals a plain in-memory implementation built from core functions.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mlflow_nlsr import core
from mlflow_nlsr.io import Entry, LazyCheckpoint, ShardedWriter, dtype_name, sha256_file
from mlflow_nlsr.options import RealignOptions
from mlflow_nlsr.pipeline import realign
from mlflow_nlsr.pipeline.full.inputs import is_linear_weight, natural_key
from mlflow_nlsr.pipeline.full.realign import realign_full
from tests import factories

SHARD = 50_000
AUX = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
       "chat_template.jinja")


def derive(src: Path, dst: Path, *, scale: float, seed: int, dtype: torch.dtype | None = None) -> Path:
    """Save `src` + seeded Gaussian noise on every tensor as a sharded checkpoint at `dst`."""
    gen = torch.Generator().manual_seed(seed)
    ckpt = LazyCheckpoint(src)
    names = ckpt.keys()
    entries = [Entry(k, dtype_name(dtype) if dtype else ckpt.info(k).dtype, ckpt.shape(k)) for k in names]
    with ShardedWriter(dst, entries, max_shard_size=SHARD) as writer:
        for key in names:
            stored = ckpt.get(key)
            t = stored.float() + torch.randn(stored.shape, generator=gen) * scale
            writer.write(key, t.to(dtype or stored.dtype))
    for name in AUX:
        if (src / name).is_file():
            shutil.copy2(src / name, dst / name)
    return dst


def make_triplet(root: Path, dtype: torch.dtype | None = None) -> tuple[Path, Path, Path]:
    """(base, aligned, finetuned) sharded tiny Llamas; aligned = base + noise, finetuned = aligned + noise."""
    raw = factories.make_tiny_llama(root / "raw", max_shard_size="50KB")
    base = derive(raw, root / "base", scale=0.0, seed=0, dtype=dtype) if dtype else raw
    aligned = derive(base, root / "aligned", scale=0.02, seed=1, dtype=dtype)
    finetuned = derive(aligned, root / "finetuned", scale=0.02, seed=2, dtype=dtype)
    return base, aligned, finetuned


def load_all(path: Path) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for file in sorted(path.glob("model*.safetensors")):
        out.update(load_file(str(file)))
    return out


def reference_realign(base: Path, aligned: Path, finetuned: Path, options: RealignOptions):
    """The algorithm on whole state dicts with core functions only (magnitude scorer, entry neurons)."""
    w0, wa, wt = load_all(base), load_all(aligned), load_all(finetuned)
    linear = sorted((k for k in wt if is_linear_weight(k, tuple(wt[k].shape))), key=natural_key)
    deltas, masks, sims = {}, {}, []
    for k in linear:
        d_e = core.extrapolate_delta(wa[k].float() - w0[k].float(), variant=options.variant,
                                     beta=options.beta)
        masks[k] = core.magnitude_mask(d_e, options.sparsity, per="matrix")
        sims.append(core.delta_similarity(wt[k].float() - w0[k].float(), d_e, masks[k]))
        deltas[k] = d_e
    sel = core.select_modules(torch.tensor(sims, dtype=torch.float64), mode=options.selection,
                              layer_rate=options.layer_rate, epsilon=options.epsilon, tau=options.tau,
                              seed=options.seed)
    out = dict(wt)
    for k, patched in zip(linear, sel.patched.tolist(), strict=True):
        if patched:
            out[k] = core.transplant_delta(wt[k], w0[k], deltas[k], masks[k])
    return out, masks, sims, sel


@pytest.fixture(scope="module")
def triplet(tmp_path_factory):
    return make_triplet(tmp_path_factory.mktemp("full"))


@pytest.fixture(scope="module")
def realigned(triplet, tmp_path_factory):
    out = tmp_path_factory.mktemp("full-out") / "realigned"
    options = RealignOptions(mode="full", scorer="magnitude", selection="official")
    result = realign_full(*triplet, out, options, progress=False, max_shard_size="60KB")
    return result, options


def test_output_is_a_sharded_checkpoint_that_transformers_loads(realigned, triplet):
    from transformers import AutoModelForCausalLM

    result, _ = realigned
    out = result.output
    index = json.loads((out / "model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) > 3 and all((out / s).is_file() for s in shards)
    assert set(index["weight_map"]) == set(LazyCheckpoint(triplet[2]).keys())
    model = AutoModelForCausalLM.from_pretrained(out)
    state = model.state_dict()
    written = load_all(out)
    for key, value in written.items():
        assert torch.equal(state[key], value), key
    logits = model(torch.tensor([[1, 2, 3]])).logits
    assert torch.isfinite(logits).all()
    for name in ("config.json", "tokenizer.json", "generation_config.json", "nlsr_report.json",
                 "similarity.png", "README.md", "masks.safetensors"):
        assert (out / name).is_file(), name
    assert not list(out.glob(".nlsr-work*")) and not list(out.parent.glob(".realigned.tmp-*"))


def test_streamed_result_equals_the_in_memory_reference(realigned, triplet):
    result, options = realigned
    expected, masks, sims, sel = reference_realign(*triplet, options)
    written = load_all(result.output)
    assert set(written) == set(expected)
    for key, value in expected.items():
        assert written[key].dtype == value.dtype and torch.equal(written[key], value), key
    saved_masks = load_file(str(result.output / "masks.safetensors"))
    assert set(saved_masks) == set(masks)
    for key, mask in masks.items():
        assert saved_masks[key].dtype == torch.bool and torch.equal(saved_masks[key], mask), key
    rows = result.report["modules"]
    assert [r["similarity"] for r in rows] == pytest.approx(sims, abs=1e-12)
    assert [r["patched"] for r in rows] == sel.patched.tolist()
    assert 0 < result.report["patched_modules"] < result.report["total_modules"]


def test_pass_through_and_unpatched_tensors_are_the_finetuned_bits(realigned, triplet):
    result, _ = realigned
    wt, written = load_all(triplet[2]), load_all(result.output)
    patched = {r["name"] + ".weight" for r in result.report["modules"] if r["patched"]}
    passthrough = [k for k in wt if not is_linear_weight(k, tuple(wt[k].shape))]
    assert any("embed_tokens" in k for k in passthrough) and any("norm" in k for k in passthrough)
    assert any("lm_head" in k for k in passthrough)
    for key in wt:
        if key not in patched:
            assert torch.equal(written[key], wt[key]), key
        else:
            assert not torch.equal(written[key], wt[key]), key


def test_masked_entries_take_the_reference_and_the_rest_keeps_the_finetuned(realigned, triplet):
    result, options = realigned
    w0, wa, wt = (load_all(p) for p in triplet)
    written = load_all(result.output)
    masks = load_file(str(result.output / "masks.safetensors"))
    amp = core.amplification(options.variant, options.beta)
    for row in result.report["modules"]:
        if not row["patched"]:
            continue
        key = row["name"] + ".weight"
        m = masks[key]
        ref = w0[key] + (wa[key] - w0[key]) * amp
        assert torch.allclose(written[key][m], ref[m], atol=1e-6)
        assert torch.equal(written[key][~m], wt[key][~m])
        assert row["mask_density"]["weight"] == pytest.approx(float(m.float().mean()))


def test_report_follows_the_lora_schema_with_mode_and_neuron(realigned):
    result, _ = realigned
    report = json.loads((result.output / "nlsr_report.json").read_text())
    for key in ("method", "variant", "scorer", "selection", "seed", "sparsity", "beta", "modules", "inputs",
                "output_sha256", "patched_modules", "total_modules", "decisions", "strength", "options"):
        assert key in report, key
    assert report["mode"] == "full" and report["neuron"] == "entry"
    names = [m["name"] for m in report["modules"]]
    assert names == sorted(names, key=natural_key) and len(names) == 4 * 7
    assert all(not n.endswith(".weight") and set(m["mask_density"]) == {"weight"}
               for n, m in zip(names, report["modules"], strict=True))
    assert set(report["inputs"]) == {"base", "aligned", "finetuned"}
    weight_files = sorted(p.name for p in result.output.glob("model*"))
    rehashed = hashlib.sha256(b"".join(
        name.encode() + b"\0" + sha256_file(result.output / name).encode() + b"\n" for name in weight_files))
    assert report["output_sha256"] == rehashed.hexdigest()  # streamed hash == hash of the written files
    assert 0 < report["strength"]["changed_fraction"] < 1


def test_bf16_checkpoints_stream_to_the_reference_result(tmp_path):
    triplet = make_triplet(tmp_path, dtype=torch.bfloat16)
    options = RealignOptions(mode="full", scorer="magnitude", selection="all")
    result = realign_full(*triplet, tmp_path / "out", options, progress=False)
    expected, _, _, _ = reference_realign(*triplet, options)
    written = load_all(result.output)
    assert (result.output / "model.safetensors").is_file()
    for key, value in expected.items():
        assert written[key].dtype == torch.bfloat16 and torch.equal(written[key], value), key


def test_row_granularity_transplants_whole_output_neurons(triplet, tmp_path):
    options = RealignOptions(mode="full", scorer="magnitude", neuron="row", selection="all", sparsity=0.75)
    result = realign_full(*triplet, tmp_path / "rows", options, progress=False)
    masks = load_file(str(result.output / "masks.safetensors"))
    for key, m in masks.items():
        rows = m.all(dim=1)
        assert torch.equal(m, rows.unsqueeze(1).expand_as(m)), key
        assert int(rows.sum()) == m.shape[0] - int(m.shape[0] * 0.75), key
    assert result.report["neuron"] == "row"


def test_dispatch_through_pipeline_realign_in_full_and_auto_mode(triplet, tmp_path):
    options = RealignOptions(scorer="weight-lowrank")
    auto = realign(*triplet, tmp_path / "auto", options, progress=False)
    again = realign(*triplet, tmp_path / "again", options.replace(mode="full"), progress=False)
    assert auto.report["mode"] == "full"
    assert auto.report["output_sha256"] == again.report["output_sha256"]
    assert (tmp_path / "auto" / "masks.safetensors").read_bytes() == \
        (tmp_path / "again" / "masks.safetensors").read_bytes()


def test_random_scorer_keeps_the_same_budget_as_magnitude(triplet, tmp_path):
    options = RealignOptions(mode="full", scorer="random", selection="all", seed=3)
    result = realign_full(*triplet, tmp_path / "rand", options, progress=False)
    masks = load_file(str(result.output / "masks.safetensors"))
    for key, m in masks.items():
        assert int(m.sum()) == m.numel() - int(m.numel() * options.sparsity), key
    magnitude = core.magnitude_mask(torch.randn(64, 64), options.sparsity)
    assert not torch.equal(masks["model.layers.0.self_attn.q_proj.weight"], magnitude)


def test_existing_output_is_refused_before_any_work(triplet, tmp_path):
    from mlflow_nlsr.errors import OutputExistsError

    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(OutputExistsError):
        realign_full(*triplet, out, RealignOptions(mode="full", scorer="magnitude"), progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]


def test_cli_realign_mode_full_writes_the_checkpoint(triplet, tmp_path):
    from click.testing import CliRunner

    from mlflow_nlsr.cli.realign import realign as realign_cmd

    base, aligned, finetuned = triplet
    out = tmp_path / "cli"
    args = ["--base", str(base), "--aligned", str(aligned), "--finetuned", str(finetuned),
            "--output", str(out), "--mode", "full", "--scorer", "magnitude", "--json"]
    res = CliRunner().invoke(realign_cmd, args)
    assert res.exit_code == 0, res.output
    report = json.loads(res.output[res.output.index("{"):])
    assert report["mode"] == "full" and (out / "config.json").is_file()
