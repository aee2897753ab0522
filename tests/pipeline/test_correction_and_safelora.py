"""The paper correction writes an exact rank-2r adapter with unchanged scaling; SafeLoRA methods change only
the factor they project, and only in the modules their rule selects."""

from __future__ import annotations

import json

import torch
from safetensors.torch import load_file

from mlflow_nlsr.io import read_adapter
from mlflow_nlsr.pipeline import realign


def test_paper_correction_is_a_rank_2r_adapter_with_the_b2a2_formula(tiny_adapters, fast_options, tmp_path):
    base, aligned, finetuned = tiny_adapters
    opts = fast_options.replace(scorer="magnitude", correction="paper")
    run = realign(base, aligned, finetuned, tmp_path / "paper", opts, progress=False)
    cfg = json.loads((run.output / "adapter_config.json").read_text())
    assert cfg["r"] == 16 and cfg["lora_alpha"] / cfg["r"] == 2.0
    got = load_file(str(run.output / "adapter_model.safetensors"))
    masks = load_file(str(run.output / "masks.safetensors"))
    al, ft = read_adapter(aligned), read_adapter(finetuned)
    patched = {m["name"]: m["patched"] for m in run.report["modules"]}
    assert any(patched.values()) and not all(patched.values())
    for name, is_patched in patched.items():
        ka, kb = f"{name}.lora_A.weight", f"{name}.lora_B.weight"
        a2, b2 = got[ka].double(), got[kb].double()
        a_t, b_t = ft.tensors[ka].double(), ft.tensors[kb].double()
        if is_patched:
            ma, mb = masks[ka], masks[kb]
            a_e, b_e = 1.8 * al.tensors[ka].double(), 1.8 * al.tensors[kb].double()
            expected = (mb * b_e) @ (ma * a_e) + (~mb * b_t) @ (~ma * a_t)
        else:
            expected = b_t @ a_t
        assert torch.allclose(b2 @ a2, expected, atol=1e-6), name


def test_paper_correction_adapter_loads_in_peft_and_reproduces_the_update(
    tiny_adapters, fast_options, tmp_path
):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base, aligned, finetuned = tiny_adapters
    opts = fast_options.replace(scorer="magnitude", correction="paper", selection="fraction", layer_rate=0.0)
    run = realign(base, aligned, finetuned, tmp_path / "paper0", opts, progress=False)
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        ref = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), finetuned).eval()
        out = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), run.output).eval()
        assert torch.allclose(ref(input_ids=ids).logits, out(input_ids=ids).logits, atol=1e-5)


def test_official_safelora_projects_b_of_the_lowest_cosine_modules(tiny_adapters, fast_options, tmp_path):
    base, aligned, finetuned = tiny_adapters
    run = realign(
        base, aligned, finetuned, tmp_path / "sl", fast_options.replace(method="safelora"), progress=False
    )
    got = load_file(str(run.output / "adapter_model.safetensors"))
    masks = load_file(str(run.output / "masks.safetensors"))
    ft = read_adapter(finetuned)
    rows = run.report["modules"]
    chosen = [r for r in rows if r["patched"]]
    assert len(chosen) == 10
    assert max(r["similarity"] for r in chosen) <= min(r["similarity"] for r in rows if not r["patched"])
    for r in rows:
        ka, kb = f"{r['name']}.lora_A.weight", f"{r['name']}.lora_B.weight"
        assert torch.equal(got[ka], ft.tensors[ka])
        assert torch.equal(got[kb], ft.tensors[kb]) != r["patched"]
        assert bool(masks[kb].all()) == r["patched"] and not masks[ka].any()
    assert "D6" in run.report["decisions"]


def test_nlsr_safelora_projects_a_where_cos_is_below_tau(tiny_adapters, fast_options, tmp_path):
    base, aligned, finetuned = tiny_adapters
    probe = realign(
        base,
        aligned,
        finetuned,
        tmp_path / "probe",
        fast_options.replace(method="safelora-nlsr", tau=0.0),
        progress=False,
    )
    cosines = sorted(r["similarity"] for r in probe.report["modules"])
    assert probe.report["patched_modules"] == 0
    tau = (cosines[5] + cosines[6]) / 2
    run = realign(
        base,
        aligned,
        finetuned,
        tmp_path / "sln",
        fast_options.replace(method="safelora-nlsr", tau=tau),
        progress=False,
    )
    got = load_file(str(run.output / "adapter_model.safetensors"))
    ft = read_adapter(finetuned)
    assert run.report["patched_modules"] == 6 and run.report["tau"] == tau
    for r in run.report["modules"]:
        ka, kb = f"{r['name']}.lora_A.weight", f"{r['name']}.lora_B.weight"
        assert r["patched"] == (r["similarity"] < tau)
        assert torch.equal(got[kb], ft.tensors[kb])
        assert torch.equal(got[ka], ft.tensors[ka]) != r["patched"]
