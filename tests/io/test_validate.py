"""Incompatible inputs fail naming the first mismatching tensor; a fresh LoRA is detected unless forced."""

from __future__ import annotations

import pytest
import torch

from mlflow_nlsr.errors import IncompatibleModelsError, InputError, NotAContinuationError
from mlflow_nlsr.io import check_compatible, check_continuation, read_adapter, write_adapter
from tests import factories


def test_matching_adapters_pass(tiny_adapters):
    base, aligned, finetuned = tiny_adapters
    check_compatible(base, read_adapter(aligned), read_adapter(finetuned))


def test_different_ranks_are_incompatible(tiny_adapters, tmp_path):
    base, aligned, _ = tiny_adapters
    other = factories.make_lora_adapter(base, tmp_path / "r4", r=4, alpha=8)
    with pytest.raises(IncompatibleModelsError, match="ranks differ"):
        check_compatible(base, read_adapter(aligned), read_adapter(other))


def test_different_targets_are_incompatible(tiny_adapters, tmp_path):
    base, aligned, _ = tiny_adapters
    other = factories.make_lora_adapter(base, tmp_path / "qv", targets=["q_proj", "v_proj"])
    with pytest.raises(IncompatibleModelsError, match="target_modules differ"):
        check_compatible(base, read_adapter(aligned), read_adapter(other))


def test_shape_mismatch_names_the_tensor(tiny_adapters, tmp_path):
    base, aligned, _ = tiny_adapters
    adapter = read_adapter(aligned)
    key = "base_model.model.model.layers.2.self_attn.k_proj.lora_B.weight"
    tensors = dict(adapter.tensors)
    tensors[key] = torch.zeros(17, adapter.r)
    write_adapter(tmp_path / "bad", adapter.config, tensors)
    with pytest.raises(IncompatibleModelsError, match=r"layers\.2\.self_attn\.k_proj\.lora_B"):
        check_compatible(base, adapter, read_adapter(tmp_path / "bad"))


def test_adapter_not_matching_the_base_shapes_is_incompatible(tiny_adapters, tmp_path):
    base, _, _ = tiny_adapters
    wider = factories.make_tiny_llama(tmp_path / "wide", hidden=32, intermediate=64, layers=4)
    a = read_adapter(factories.make_lora_adapter(wider, tmp_path / "a"))
    t = read_adapter(factories.continue_adapter(wider, tmp_path / "a", tmp_path / "t"))
    check_compatible(wider, a, t)
    with pytest.raises(IncompatibleModelsError, match="expected A"):
        check_compatible(base, a, t)


def test_missing_tensor_is_named(tiny_adapters, tmp_path):
    base, aligned, _ = tiny_adapters
    adapter = read_adapter(aligned)
    drop = "base_model.model.model.layers.1.mlp.up_proj"
    tensors = {k: v for k, v in adapter.tensors.items() if not k.startswith(drop + ".")}
    write_adapter(tmp_path / "less", adapter.config, tensors)
    expected = r"layers\.1\.mlp\.up_proj\.lora_A\.weight is only in the aligned"
    with pytest.raises(IncompatibleModelsError, match=expected):
        check_compatible(base, adapter, read_adapter(tmp_path / "less"))


def test_base_without_config_is_an_input_error(tiny_adapters, tmp_path):
    _, aligned, finetuned = tiny_adapters
    with pytest.raises(InputError, match="config.json"):
        check_compatible(tmp_path, read_adapter(aligned), read_adapter(finetuned))


def test_continued_adapter_has_a_high_continuation_score(tiny_adapters):
    _, aligned, finetuned = tiny_adapters
    score = check_continuation(read_adapter(aligned), read_adapter(finetuned))
    assert 0.7 < score <= 1.0


def test_fresh_lora_is_not_a_continuation(tiny_adapters, tmp_path):
    base, aligned, _ = tiny_adapters
    fresh = read_adapter(factories.make_lora_adapter(base, tmp_path / "fresh", seed=99))
    with pytest.raises(NotAContinuationError, match="--force") as info:
        check_continuation(read_adapter(aligned), fresh)
    assert "fresh LoRA" in str(info.value)


def test_fresh_lora_with_zero_b_is_not_a_continuation(tiny_adapters, tmp_path):
    base, aligned, _ = tiny_adapters
    init = read_adapter(factories.make_lora_adapter(base, tmp_path / "init", seed=7))
    tensors = {k: (torch.zeros_like(v) if ".lora_B." in k else v) for k, v in init.tensors.items()}
    write_adapter(tmp_path / "zero", init.config, tensors)
    with pytest.raises(NotAContinuationError):
        check_continuation(read_adapter(aligned), read_adapter(tmp_path / "zero"))


def test_force_returns_the_low_score_instead_of_raising(tiny_adapters, tmp_path):
    base, aligned, _ = tiny_adapters
    fresh = read_adapter(factories.make_lora_adapter(base, tmp_path / "fresh", seed=99))
    score = check_continuation(read_adapter(aligned), fresh, force=True)
    assert abs(score) < 0.3
