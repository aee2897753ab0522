"""Block-sequential replay sees what a full forward pass feeds each block, before and after projection."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mlflow_nlsr import core
from mlflow_nlsr.errors import CalibrationError
from mlflow_nlsr.io import read_adapter
from mlflow_nlsr.pipeline.activations import (
    BlockInputs,
    actsvd_projections,
    block_grams,
    capture_block_inputs,
    decoder_blocks,
    lora_factors,
    make_batches,
    run_block,
)
from mlflow_nlsr.pipeline.actsvd_data import encode_pairs, load_pairs
from mlflow_nlsr.pipeline.loading import load_adapted_model, load_tokenizer


@pytest.fixture()
def setup(tiny_adapters, calib_file):
    base, aligned, _ = tiny_adapters
    adapter = read_adapter(aligned)
    model = load_adapted_model(base, adapter.config, adapter.tensors, torch.device("cpu"))
    tok = load_tokenizer(base)
    samples = encode_pairs(tok, load_pairs(calib_file), samples=6, max_length=48, seed=0)
    return model, make_batches(samples, 4, tok.pad_token_id)


def _naive_grams(model, block, prefix, batches):
    """Gram of every factor input of `block`, captured during full-model forwards."""
    factors = lora_factors(block, prefix)
    grams = {k: 0 for k in factors}
    handles, state = [], {}
    for key, lin in factors.items():

        def hook(_m, args, _o, key=key):
            x = args[0][state["resp"]]
            grams[key] = grams[key] + x.double().T @ x.double()

        handles.append(lin.register_forward_hook(hook))
    with torch.no_grad():
        for b in batches:
            state["resp"] = b["response"]
            model(input_ids=b["input_ids"], attention_mask=b["attention_mask"], use_cache=False)
    for h in handles:
        h.remove()
    return grams


def test_decoder_blocks_are_found_with_their_lora_factors(setup):
    model, _ = setup
    prefix, blocks = decoder_blocks(model)
    assert prefix == "base_model.model.model.layers" and len(blocks) == 4
    keys = lora_factors(blocks[0], f"{prefix}.0")
    assert len(keys) == 14
    assert "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight" in keys


def test_replayed_block0_grams_equal_a_full_forward_capture(setup):
    model, batches = setup
    prefix, blocks = decoder_blocks(model)
    states = capture_block_inputs(model, blocks[0], batches)
    replay = block_grams(blocks[0], lora_factors(blocks[0], f"{prefix}.0"), states)
    naive = _naive_grams(model, blocks[0], f"{prefix}.0", batches)
    assert replay.keys() == naive.keys()
    for key in naive:
        assert torch.allclose(replay[key], naive[key], rtol=1e-5, atol=1e-8), key


def test_block1_after_projecting_block0_equals_a_full_forward_capture(setup):
    model, batches = setup
    prefix, blocks = decoder_blocks(model)
    states = capture_block_inputs(model, blocks[0], batches)
    grams0 = block_grams(blocks[0], lora_factors(blocks[0], f"{prefix}.0"), states)
    for key, lin in lora_factors(blocks[0], f"{prefix}.0").items():
        lin.weight.data.copy_(core.actsvd_project(lin.weight.data, grams0[key], 2))
    states = [BlockInputs((run_block(blocks[0], s), *s.args[1:]), s.kwargs, s.response) for s in states]
    replay = block_grams(blocks[1], lora_factors(blocks[1], f"{prefix}.1"), states)
    naive = _naive_grams(model, blocks[1], f"{prefix}.1", batches)
    for key in naive:
        assert torch.allclose(replay[key], naive[key], rtol=1e-4, atol=1e-7), key


def test_only_response_tokens_enter_the_gram(setup):
    model, batches = setup
    prefix, blocks = decoder_blocks(model)
    states = capture_block_inputs(model, blocks[0], batches)
    key = f"{prefix}.0.self_attn.q_proj.lora_A.weight"
    grams = block_grams(blocks[0], {key: lora_factors(blocks[0], f"{prefix}.0")[key]}, states)
    all_tokens = [BlockInputs(s.args, s.kwargs, torch.ones_like(s.response)) for s in states]
    grams_all = block_grams(blocks[0], {key: lora_factors(blocks[0], f"{prefix}.0")[key]}, all_tokens)
    assert not torch.allclose(grams[key], grams_all[key])


def test_tuple_returning_blocks_are_unwrapped():
    class TupleBlock(nn.Module):
        def forward(self, hidden, scale=1.0):
            return (hidden * scale, None)

    out = run_block(TupleBlock(), BlockInputs((torch.ones(2, 3),), {"scale": 2.0}, torch.ones(2, 3) > 0))
    assert torch.equal(out, torch.full((2, 3), 2.0))


def test_projections_cover_every_factor_and_change_the_model_in_place(setup):
    model, batches = setup
    before = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" in n}
    projected = actsvd_projections(model, batches, sparsity=0.5, variant="official", progress=False)
    assert len(projected) == 4 * 14
    for key, value in projected.items():
        param = dict(model.named_parameters())[key.replace(".weight", ".default.weight")]
        assert torch.equal(param.detach(), value)
        rank = core.kept_rank(min(value.shape), 0.5, "official")
        assert torch.linalg.matrix_rank(value.double(), rtol=1e-5) <= rank
    assert any(not torch.equal(before[k], p) for k, p in model.named_parameters() if k in before)


def test_calibration_without_response_tokens_is_an_error(setup):
    model, batches = setup
    empty = [{**b, "response": torch.zeros_like(b["response"])} for b in batches]
    with pytest.raises(CalibrationError, match="no response tokens"):
        actsvd_projections(model, empty, sparsity=0.8, variant="official", progress=False)
