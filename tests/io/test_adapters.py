"""Adapters round-trip exactly and deterministically; broken adapter dirs fail naming the bad file."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from mlflow_nlsr.errors import CorruptCheckpointError, InputError
from mlflow_nlsr.io import read_adapter, write_adapter
from tests import factories


def test_read_adapter_exposes_config_rank_scaling_and_modules(tiny_adapters):
    _, aligned, _ = tiny_adapters
    adapter = read_adapter(aligned)
    assert adapter.r == 8 and adapter.alpha == 16 and adapter.scaling == 2.0
    assert len(adapter.modules) == 4 * 7
    assert adapter.modules[0] == "base_model.model.model.layers.0.mlp.down_proj"
    assert adapter.modules[-1].startswith("base_model.model.model.layers.3.")
    assert adapter.factor_a(adapter.modules[0]).shape == (8, 128)
    assert adapter.factor_b(adapter.modules[0]).shape == (64, 8)
    assert set(adapter.target_modules) == set(factories.TARGETS)


def test_modules_are_in_natural_layer_order(tiny_base, tmp_path):
    big = factories.make_tiny_llama(tmp_path / "base12", layers=12, hidden=32, intermediate=64)
    adapter = read_adapter(factories.make_lora_adapter(big, tmp_path / "a", targets=["q_proj"]))
    layers = [int(m.split(".layers.")[1].split(".")[0]) for m in adapter.modules]
    assert layers == sorted(layers) == list(range(12))


def test_write_then_read_round_trips_every_tensor(tiny_adapters, tmp_path):
    _, aligned, _ = tiny_adapters
    adapter = read_adapter(aligned)
    write_adapter(tmp_path / "copy", adapter.config, adapter.tensors)
    again = read_adapter(tmp_path / "copy")
    assert again.config == adapter.config
    assert again.tensors.keys() == adapter.tensors.keys()
    for key, value in adapter.tensors.items():
        assert torch.equal(again.tensors[key], value)


def test_writing_the_same_tensors_twice_gives_byte_identical_files(tiny_adapters, tmp_path):
    _, aligned, _ = tiny_adapters
    adapter = read_adapter(aligned)
    shuffled = dict(reversed(list(adapter.tensors.items())))
    write_adapter(tmp_path / "one", adapter.config, adapter.tensors)
    write_adapter(tmp_path / "two", adapter.config, shuffled)
    for name in ("adapter_model.safetensors", "adapter_config.json"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()


def test_bin_adapters_are_read_like_safetensors(tiny_adapters, tmp_path):
    _, aligned, _ = tiny_adapters
    adapter = read_adapter(aligned)
    out = tmp_path / "bin"
    out.mkdir()
    (out / "adapter_config.json").write_text(json.dumps(adapter.config))
    torch.save(adapter.tensors, out / "adapter_model.bin")
    again = read_adapter(out)
    assert all(torch.equal(again.tensors[k], v) for k, v in adapter.tensors.items())


def test_missing_config_names_the_file(tmp_path):
    (tmp_path / "a").mkdir()
    with pytest.raises(InputError, match="adapter_config.json is missing"):
        read_adapter(tmp_path / "a")


def test_missing_directory_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        read_adapter(tmp_path / "nope")


def test_truncated_safetensors_is_a_corrupt_checkpoint_naming_the_file(tiny_adapters, tmp_path):
    _, aligned, _ = tiny_adapters
    adapter = read_adapter(aligned)
    write_adapter(tmp_path / "t", adapter.config, adapter.tensors)
    weights = tmp_path / "t" / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(CorruptCheckpointError, match="adapter_model.safetensors"):
        read_adapter(tmp_path / "t")


def test_garbage_bin_file_is_a_corrupt_checkpoint(tiny_adapters, tmp_path):
    _, aligned, _ = tiny_adapters
    out = tmp_path / "g"
    out.mkdir()
    (out / "adapter_config.json").write_text((aligned / "adapter_config.json").read_text())
    (out / "adapter_model.bin").write_bytes(b"not a pickle at all")
    with pytest.raises(CorruptCheckpointError, match="adapter_model.bin"):
        read_adapter(out)


def test_nan_tensor_is_rejected_naming_the_tensor(tiny_adapters, tmp_path):
    _, aligned, _ = tiny_adapters
    adapter = read_adapter(aligned)
    tensors = dict(adapter.tensors)
    bad = adapter.modules[3] + ".lora_B.weight"
    tensors[bad] = tensors[bad].clone()
    tensors[bad][0, 0] = float("nan")
    write_adapter(tmp_path / "n", adapter.config, tensors)
    with pytest.raises(CorruptCheckpointError, match=bad.replace(".", r"\.")):
        read_adapter(tmp_path / "n")


def test_non_lora_peft_type_is_rejected(tiny_adapters, tmp_path):
    _, aligned, _ = tiny_adapters
    adapter = read_adapter(aligned)
    write_adapter(tmp_path / "ia3", {**adapter.config, "peft_type": "IA3"}, adapter.tensors)
    with pytest.raises(InputError, match="peft_type must be LORA"):
        read_adapter(tmp_path / "ia3")


def test_lora_a_without_lora_b_is_rejected(tiny_adapters, tmp_path):
    _, aligned, _ = tiny_adapters
    adapter = read_adapter(aligned)
    tensors = {k: v for k, v in adapter.tensors.items() if not k.endswith("down_proj.lora_B.weight")}
    write_adapter(tmp_path / "x", adapter.config, tensors)
    with pytest.raises(InputError, match="no matching .*lora_B"):
        read_adapter(tmp_path / "x")


def test_adapter_name_segment_in_keys_is_normalised(tiny_adapters, tmp_path):
    _, aligned, _ = tiny_adapters
    adapter = read_adapter(aligned)
    named = {k.replace(".weight", ".default.weight"): v for k, v in adapter.tensors.items()}
    out = tmp_path / "named"
    out.mkdir()
    save_file(named, str(out / "adapter_model.safetensors"))
    (out / "adapter_config.json").write_text(json.dumps(adapter.config))
    assert set(read_adapter(out).tensors) == set(adapter.tensors)
