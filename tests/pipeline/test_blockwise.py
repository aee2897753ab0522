"""One decoder block in memory gives the same ActSVD projections as the whole PEFT model loaded."""

from __future__ import annotations

import pytest
import torch

from mlflow_nlsr import core
from mlflow_nlsr.errors import ConfigError
from mlflow_nlsr.io import read_adapter
from mlflow_nlsr.options import RealignOptions
from mlflow_nlsr.pipeline.activations import actsvd_projections, make_batches
from mlflow_nlsr.pipeline.actsvd_data import encode_pairs, load_pairs
from mlflow_nlsr.pipeline.blockwise import BlockStream
from mlflow_nlsr.pipeline.loading import load_adapted_model, load_tokenizer, resolve, resolve_device
from mlflow_nlsr.pipeline.lora_blockwise import blockwise_projections, supports_blockwise


@pytest.fixture()
def calibration(tiny_adapters, calib_file):
    base, aligned, _ = tiny_adapters
    tok = load_tokenizer(base)
    samples = encode_pairs(tok, load_pairs(calib_file), samples=8, max_length=200, seed=0)
    batches = make_batches(samples, 4, tok.pad_token_id)
    # more response tokens than the hidden size: full-rank Grams, so the kept subspaces are unique
    assert sum(int(b["response"].sum()) for b in batches) > 128
    return base, read_adapter(aligned), batches


def test_blockwise_lora_projections_equal_the_whole_model_path_bit_for_bit(tiny_adapters, calib_file):
    base, aligned, _ = tiny_adapters
    adapter, tok = read_adapter(aligned), load_tokenizer(base)
    # few response tokens: rank-deficient Grams, where only identical arithmetic gives identical subspaces
    samples = encode_pairs(tok, load_pairs(calib_file), samples=6, max_length=48, seed=0)
    batches = make_batches(samples, 4, tok.pad_token_id)
    model = load_adapted_model(base, adapter.config, adapter.tensors, torch.device("cpu"), torch.float32)
    old = actsvd_projections(model, batches, sparsity=0.8, variant="official", progress=False)
    new = blockwise_projections(base, adapter.tensors, batches, sparsity=0.8, variant="official",
                                scaling=adapter.scaling, device=torch.device("cpu"), progress=False)
    assert set(new) == set(old)
    assert all(torch.equal(new[k], old[k]) for k in old)


@pytest.mark.parametrize("variant", ["official", "paper"])
def test_blockwise_lora_projections_match_the_whole_model_path(calibration, variant):
    base, adapter, batches = calibration
    model = load_adapted_model(base, adapter.config, adapter.tensors, torch.device("cpu"), torch.float32)
    old = actsvd_projections(model, batches, sparsity=0.5, variant=variant, progress=False)
    new = blockwise_projections(base, adapter.tensors, batches, sparsity=0.5, variant=variant,
                                scaling=adapter.scaling, device=torch.device("cpu"), progress=False)
    assert set(new) == set(old) and len(new) == 4 * 14
    for key, value in old.items():
        assert float((new[key] - value).abs().max()) <= 1e-4, key
        per = "matrix" if variant == "official" else "row"
        assert torch.equal(core.top_mask(new[key], 0.8, per=per), core.top_mask(value, 0.8, per=per)), key


def test_realign_lora_records_the_blockwise_device_and_dtype(official_run):
    calibration = official_run.report["actsvd_data"]
    assert calibration["blockwise"] is True
    assert calibration["device"] == "cpu" and calibration["dtype"] == "float32"


def test_only_the_current_block_is_materialised(tiny_base):
    from mlflow_nlsr.io.safetensors_io import LazyCheckpoint

    with LazyCheckpoint(tiny_base) as ckpt:
        stream = BlockStream(tiny_base, ckpt.get, torch.device("cpu"))
        assert all(p.is_meta for b in stream.blocks for p in b.parameters())
        assert stream.model.get_output_embeddings().weight.is_meta  # lm_head is never needed
        with stream.block(2) as block:
            assert not any(p.is_meta for p in block.parameters())
            real = [i for i, b in enumerate(stream.blocks) if not next(b.parameters()).is_meta]
            assert real == [2]
            expected = ckpt.get("model.layers.2.mlp.down_proj.weight")
            assert torch.equal(block.mlp.down_proj.weight, expected)
        assert all(p.is_meta for b in stream.blocks for p in b.parameters())


def test_dora_adapters_fall_back_to_the_whole_model_path():
    assert supports_blockwise({"use_dora": False})
    assert not supports_blockwise({"use_dora": True})


def test_auto_device_and_dtype_resolve_to_cpu_float32_without_a_gpu():
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert resolve("auto", "auto") == (torch.device("cpu"), torch.float32)
    assert resolve("cpu", "bfloat16") == (torch.device("cpu"), torch.bfloat16)
    with pytest.raises(ConfigError, match="no CUDA device"):
        resolve_device("cuda:1")


def test_bad_device_or_dtype_options_are_config_errors():
    with pytest.raises(ConfigError, match="device must be"):
        RealignOptions(device="tpu")
    with pytest.raises(ConfigError, match="dtype must be"):
        RealignOptions(dtype="int8")
    assert RealignOptions(device="cuda:3").device == "cuda:3"
