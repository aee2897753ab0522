"""The official variant equals an independent transcription of the spec's §1.7 pseudo-code on a fixed seed.

The transcription captures each factor's input X with hooks during full-model forwards (no block replay),
projects with an exact SVD of Y = X Wᵀ (no Gram trick), thresholds with sort(|Ŵ|)[int(0.8·n)], computes
S_j from the dense masked products and the rank-based Bernoulli probabilities by hand.
"""

from __future__ import annotations

import tempfile

import torch
from safetensors.torch import load_file

from mlflow_nlsr.io import read_adapter, write_adapter
from mlflow_nlsr.pipeline.activations import make_batches
from mlflow_nlsr.pipeline.actsvd_data import encode_pairs, load_pairs
from mlflow_nlsr.pipeline.loading import load_tokenizer

ALPHA, P_SR, P_L, EPS, SEED = 0.9, 0.8, 0.5, 0.2, 42


def _spec_actsvd(base, config, ref, batches):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    with tempfile.TemporaryDirectory() as tmp:
        write_adapter(tmp, config, ref)
        model = PeftModel.from_pretrained(model, tmp).eval()
    names = [n for n, _ in model.named_parameters() if "lora_" in n]
    params = dict(model.named_parameters())
    modules = dict(model.named_modules())
    n_layers = model.config.num_hidden_layers
    for layer in range(n_layers):
        in_block = [n for n in names if f".layers.{layer}." in n]
        xs = {n: [] for n in in_block}
        handles, state = [], {}
        for n in in_block:
            lin = modules[n.removesuffix(".weight")]

            def hook(_m, args, _o, n=n, xs=xs, state=state):
                xs[n].append(args[0][state["resp"]].detach())

            handles.append(lin.register_forward_hook(hook))
        with torch.no_grad():
            for b in batches:
                state["resp"] = b["response"]
                model(input_ids=b["input_ids"], attention_mask=b["attention_mask"], use_cache=False)
        for h in handles:
            h.remove()
        for n in in_block:
            w = params[n]
            x = torch.cat(xs[n]).double()
            y = x @ w.detach().double().T
            k = int(min(w.shape) * P_SR)
            _, _, vh = torch.linalg.svd(y, full_matrices=False)
            v = vh[:k].T
            w.data.copy_((v @ v.T @ w.detach().double()).float())
    order = [n.replace(".default.weight", ".weight") for n in names]
    return {n.replace(".default.weight", ".weight"): params[n].detach().clone() for n in names}, order


def test_official_variant_matches_the_spec_pseudocode(official_run, tiny_adapters, calib_file, fast_options):
    base, aligned, finetuned = tiny_adapters
    al, ft = read_adapter(aligned), read_adapter(finetuned)
    # 1) reference: A and B each x 2*alpha
    ref = {k: 2 * ALPHA * v for k, v in al.tensors.items()}
    # 2) masks from the block-sequential low-rank projection of the reference adapter
    tok = load_tokenizer(base)
    samples = encode_pairs(
        tok,
        load_pairs(calib_file),
        samples=fast_options.calibration_samples,
        max_length=fast_options.max_length,
        seed=fast_options.seed,
    )
    proj, order = _spec_actsvd(base, ft.config, ref, make_batches(samples, 8, tok.pad_token_id))
    masks = {}
    for key, w in proj.items():
        m = w.abs().flatten()
        thresh = torch.sort(m).values[int(P_SR * m.numel())]
        masks[key] = w.abs() > thresh
    # 3a) similarity + sampling, modules in named_parameters order
    modules = [k.removesuffix(".lora_A.weight") for k in order if k.endswith(".lora_A.weight")]
    sims = []
    for mod in modules:
        ka, kb = mod + ".lora_A.weight", mod + ".lora_B.weight"
        ma, mb = masks[ka], masks[kb]
        f_t = ((ma * ft.tensors[ka]).T.double() @ (mb * ft.tensors[kb]).T.double()).flatten()
        f_e = ((ma * ref[ka]).T.double() @ (mb * ref[kb]).T.double()).flatten()
        sims.append(float(f_t @ f_e / (f_t.norm() * f_e.norm())))
    s = torch.tensor(sims, dtype=torch.float64)
    rank = torch.empty_like(s)
    rank[torch.argsort(s, descending=True, stable=True)] = torch.arange(
        len(s) + 1, 1, -1, dtype=torch.float64
    )
    u = (rank - rank.min()) / (rank.max() - rank.min())
    p = (P_L - EPS) + 2 * EPS * u
    g = torch.bernoulli(p, generator=torch.Generator().manual_seed(SEED))
    # 3b) transplant
    expected = dict(ft.tensors)
    for mod, draw in zip(modules, g.tolist(), strict=True):
        if draw == 1:
            for f in ("lora_A", "lora_B"):
                key = f"{mod}.{f}.weight"
                expected[key] = torch.where(masks[key], ref[key], ft.tensors[key])

    report = official_run.report
    assert [m["name"] for m in report["modules"]] == modules
    assert [m["patched"] for m in report["modules"]] == [d == 1 for d in g.tolist()]
    for row, sim in zip(report["modules"], sims, strict=True):
        assert abs(row["similarity"] - sim) < 1e-6
    got_masks = load_file(str(official_run.output / "masks.safetensors"))
    got = load_file(str(official_run.output / "adapter_model.safetensors"))
    for key in expected:
        assert torch.equal(got_masks[key], masks[key]), key
        assert torch.equal(got[key], expected[key]), key
