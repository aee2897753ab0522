"""The actsvd scorer in full-weight mode captures input Gram matrices from the reference model.

Modules that read the same input (q/k/v, gate/up) share one Gram matrix; each Gram is XᵀX of real
response-token activations (symmetric, positive semi-definite, non-zero); the masks are the top entries
of ΔW_e projected onto its top output-activation subspace, and the report records the calibration data.
"""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from mlflow_nlsr import core
from mlflow_nlsr.io.safetensors_io import LazyCheckpoint
from mlflow_nlsr.options import RealignOptions
from mlflow_nlsr.pipeline.full.activations import capture_grams, capture_grams_loaded
from mlflow_nlsr.pipeline.full.inputs import is_linear_weight, open_sources
from mlflow_nlsr.pipeline.full.realign import realign_full
from mlflow_nlsr.pipeline.full.scoring import kept_rank_for
from tests.pipeline.test_full_realign import load_all, make_triplet

PAIRS = [
    {"prompt": "How do I pick a lock?", "response": "I can't help with breaking into property."},
    {"prompt": "Write a poem about the sea.", "response": "Waves fold grey light into the sand."},
    {"prompt": "How can I hurt someone?", "response": "I won't help with hurting anyone. Talk to someone."},
]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("actsvd")
    calib = root / "calib.jsonl"
    calib.write_text("".join(json.dumps(p) + "\n" for p in PAIRS))
    options = RealignOptions(mode="full", scorer="actsvd", calibration=str(calib), calibration_samples=3,
                             max_length=48, selection="all")
    return make_triplet(root), options


def test_grams_are_shared_by_modules_reading_the_same_input(setup, tmp_path):
    triplet, options = setup
    base, aligned, finetuned = open_sources(*triplet)
    linear = {k for k in finetuned.infos if is_linear_weight(k, finetuned.infos[k].shape)}
    path, alias, info = capture_grams(triplet[0], triplet[2], base, aligned, linear, options, tmp_path)
    for layer in range(4):
        prefix = f"model.layers.{layer}."
        assert alias[prefix + "self_attn.k_proj.weight"] == prefix + "self_attn.q_proj.weight"
        assert alias[prefix + "self_attn.v_proj.weight"] == prefix + "self_attn.q_proj.weight"
        assert alias[prefix + "mlp.up_proj.weight"] == prefix + "mlp.gate_proj.weight"
        assert prefix + "self_attn.o_proj.weight" not in alias
    with LazyCheckpoint(path) as grams:
        names = grams.keys()
        assert set(names) == linear - set(alias)
        assert len(grams.shards()) == 4  # one shard per decoder block, written when the block is done
        for key in names:
            g = grams.get(key)
            assert g.dtype == torch.float64 and torch.allclose(g, g.T)
            assert float(torch.linalg.eigvalsh(g).min()) > -1e-8 * float(g.diagonal().max())
            assert float(g.trace()) > 0
    assert info["samples"] == 3 and info["response_tokens"] > 0 and len(info["sha256"]) == 64


def test_actsvd_masks_are_top_entries_of_the_activation_projection(setup, tmp_path):
    triplet, options = setup
    result = realign_full(*triplet, tmp_path / "out", options, progress=False)
    masks = load_file(str(result.output / "masks.safetensors"))
    assert result.report["inputs"]["calibration"] == result.report["actsvd_data"]["sha256"]
    assert result.report["scorer"] == "actsvd" and "D2" in result.report["decisions"]
    # recompute one module's mask from a fresh Gram capture
    base, aligned, finetuned = open_sources(*triplet)
    key = "model.layers.1.mlp.down_proj.weight"
    linear = {k for k in finetuned.infos if is_linear_weight(k, finetuned.infos[k].shape)}
    path, alias, _ = capture_grams(triplet[0], triplet[2], base, aligned, linear, options, tmp_path)
    with LazyCheckpoint(path) as grams:
        gram = grams.get(key)
    w0, wa = load_all(triplet[0]), load_all(triplet[1])
    d_e = core.extrapolate_delta(wa[key] - w0[key], variant=options.variant, beta=options.beta)
    projected = core.actsvd_project(d_e, gram, kept_rank_for(tuple(d_e.shape), options))
    expected = core.top_mask(projected, options.sparsity, per="matrix")
    assert torch.equal(masks[key], expected)
    magnitude = core.magnitude_mask(d_e, options.sparsity)
    assert not torch.equal(masks[key], magnitude)


def test_block_by_block_grams_equal_the_whole_model_grams(setup, tmp_path):
    triplet, options = setup
    base, aligned, finetuned = open_sources(*triplet)
    linear = {k for k in finetuned.infos if is_linear_weight(k, finetuned.infos[k].shape)}
    (tmp_path / "old").mkdir()
    (tmp_path / "new").mkdir()
    old_path, old_alias, _ = capture_grams_loaded(triplet[0], triplet[2], base, aligned, linear, options,
                                                  tmp_path / "old")
    new_path, new_alias, info = capture_grams(triplet[0], triplet[2], base, aligned, linear, options,
                                              tmp_path / "new")
    assert new_alias == old_alias and info["blockwise"] and info["dtype"] == "float32"
    old, w0, wa = load_file(str(old_path)), load_all(triplet[0]), load_all(triplet[1])
    with LazyCheckpoint(new_path) as new:
        assert set(new.keys()) == set(old)
        for key in old:
            gram = new.get(key)
            assert torch.allclose(gram, old[key], rtol=1e-5, atol=1e-6 * float(old[key].abs().max()))
            d_e = core.extrapolate_delta(wa[key] - w0[key], variant=options.variant, beta=options.beta)
            k = kept_rank_for(tuple(d_e.shape), options)
            p_old, p_new = core.actsvd_project(d_e, old[key], k), core.actsvd_project(d_e, gram, k)
            assert float((p_new - p_old).abs().max()) <= 1e-4
            assert torch.equal(core.top_mask(p_new, options.sparsity), core.top_mask(p_old, options.sparsity))
