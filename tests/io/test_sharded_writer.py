"""Header-first writing pieces: single files, shard plans, sizes and the value spill round-trip exactly.

A SafetensorsWriter file loads with safetensors itself; tensors must come in the planned order with the
planned dtype and shape; shard plans keep order and respect the size limit; sizes parse in decimal and
binary units; the scratch spill returns every tensor it was given.
"""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from mlflow_nlsr.errors import ConfigError, InputError
from mlflow_nlsr.io import (
    Entry,
    SafetensorsReader,
    SafetensorsWriter,
    ValueSpill,
    dtype_name,
    parse_size,
    plan_shards,
)


def _tensors() -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    out = {f"layers.{i}.w": torch.randn(16, 8, generator=gen) for i in range(6)}
    out["half"] = torch.randn(4, 4, generator=gen).to(torch.bfloat16)
    out["ids"] = torch.arange(5)
    out["mask"] = torch.rand(3, 7, generator=gen) > 0.5
    out["scalar"] = torch.tensor(2.5)
    return out


def _entries(tensors: dict[str, torch.Tensor]) -> list[Entry]:
    return [Entry(k, dtype_name(v.dtype), tuple(v.shape)) for k, v in tensors.items()]


def test_single_streamed_file_loads_with_safetensors_and_the_reader(tmp_path):
    tensors = _tensors()
    file = SafetensorsWriter(tmp_path / "x.safetensors", _entries(tensors), {"k": "v"})
    for key, value in tensors.items():
        file.write(key, value)
    file.finish()
    loaded = load_file(str(tmp_path / "x.safetensors"))
    assert all(torch.equal(loaded[k], v) and loaded[k].dtype == v.dtype for k, v in tensors.items())
    with SafetensorsReader(tmp_path / "x.safetensors") as reader:
        assert reader.keys() == list(tensors)
        assert all(torch.equal(reader.get(k), v) for k, v in tensors.items())


def test_out_of_order_wrong_shape_or_missing_tensors_are_refused(tmp_path):
    tensors = _tensors()
    file = SafetensorsWriter(tmp_path / "x.safetensors", _entries(tensors))
    with pytest.raises(InputError, match="expected layers.0.w"):
        file.write("layers.1.w", tensors["layers.1.w"])
    with pytest.raises(InputError, match=r"expected layers.0.w F32 \[16, 8\]"):
        file.write("layers.0.w", torch.zeros(8, 16))
    file.write("layers.0.w", tensors["layers.0.w"])
    with pytest.raises(InputError, match="layers.1.w was never written"):
        file.finish()
    assert not (tmp_path / "x.safetensors").exists()


def test_shard_plan_respects_the_size_limit_and_keeps_order():
    entries = [Entry(f"t{i}", "F32", (10, 10)) for i in range(7)]  # 400 bytes each
    shards = plan_shards(entries, 1000)
    assert [len(s) for s in shards] == [2, 2, 2, 1]
    assert [e.key for s in shards for e in s] == [e.key for e in entries]
    assert [len(s) for s in plan_shards([Entry("big", "F32", (100, 100))], 10)] == [1]


def test_sizes_parse_in_decimal_and_binary_units():
    assert parse_size("2GB") == 2 * 10**9
    assert parse_size("500MiB") == 500 * 2**20
    assert parse_size("50KB") == 50_000
    assert parse_size(123) == 123
    with pytest.raises(ConfigError):
        parse_size("two gigs")
    with pytest.raises(ConfigError, match="at least 1 byte"):
        parse_size(0)


def test_an_unsupported_dtype_is_named():
    with pytest.raises(InputError, match="F4"):
        _ = Entry("w", "F4", (2,)).nbytes
    with pytest.raises(InputError, match="complex64"):
        dtype_name(torch.complex64)


def test_value_spill_round_trips_any_dtype(tmp_path):
    spill = ValueSpill(tmp_path / "spill.bin")
    values = {"a": torch.randn(7).to(torch.bfloat16), "b": torch.randn(0), "c": torch.arange(9.0)}
    for key, value in values.items():
        spill.write(key, value)
    for key in ("c", "a", "b"):
        assert torch.equal(spill.read(key), values[key])
    with pytest.raises(InputError, match="no values for d"):
        spill.read("d")
    spill.close()
    assert not (tmp_path / "spill.bin").exists()
