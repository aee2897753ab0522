"""Streamed sharded writing and plain-read lazy reading round-trip every tensor, dtype and shard layout.

A checkpoint written by ShardedWriter loads with safetensors itself and reads back bit for bit through
LazyCheckpoint; a truncated or inconsistent file is a CorruptCheckpointError naming the file (and tensor).
"""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from mlflow_nlsr.errors import CorruptCheckpointError, InputError
from mlflow_nlsr.io import Entry, LazyCheckpoint, SafetensorsReader, ShardedWriter
from tests import factories


def _tensors() -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    out = {f"layer.{i}.weight": torch.randn(16, 8, generator=gen) for i in range(10)}
    out["ids"] = torch.arange(12, dtype=torch.int64)
    out["half"] = torch.randn(4, 4, generator=gen).to(torch.bfloat16)
    out["mask"] = torch.rand(3, 7, generator=gen) > 0.5
    out["scalar"] = torch.tensor(2.5)
    return out


def _write(path, tensors, **kwargs) -> list[str]:
    with ShardedWriter(path, [Entry.of(k, v) for k, v in tensors.items()], **kwargs) as writer:
        for key in writer.order:
            writer.write(key, tensors[key])
    return writer.files


def test_several_shards_round_trip_with_an_index(tmp_path):
    tensors = _tensors()
    files = _write(tmp_path, tensors, max_shard_size=1200)
    shards = sorted(tmp_path.glob("model-*.safetensors"))
    assert len(shards) >= 3
    assert files == [*(s.name for s in shards), "model.safetensors.index.json"]
    assert shards[0].name == f"model-00001-of-{len(shards):05d}.safetensors"
    assert all(s.stat().st_size <= 1200 + 2000 for s in shards)  # data under the limit, plus a header
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"]) == set(tensors)
    assert index["metadata"]["total_size"] == sum(t.numel() * t.element_size() for t in tensors.values())
    ckpt = LazyCheckpoint(tmp_path)
    assert ckpt.keys() == sorted(tensors)
    assert ckpt.ordered_keys() == list(tensors)
    assert len(ckpt.shards()) == len(shards)
    for key, value in tensors.items():
        assert ckpt.shape(key) == tuple(value.shape)
        got = ckpt.get(key)
        assert got.dtype == value.dtype and torch.equal(got, value), key
    for shard in shards:  # safetensors itself reads every shard
        for key, value in load_file(str(shard)).items():
            assert torch.equal(value, tensors[key])


def test_one_shard_is_written_as_model_safetensors(tmp_path):
    assert _write(tmp_path / "out", {"w": torch.ones(3, 3)}) == ["model.safetensors"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["model.safetensors"]
    assert torch.equal(LazyCheckpoint(tmp_path / "out").get("w"), torch.ones(3, 3))


def test_writer_hashes_equal_the_file_hashes(tmp_path):
    import hashlib

    with ShardedWriter(tmp_path, [Entry.of(k, v) for k, v in _tensors().items()], max_shard_size=900) as w:
        for key in w.order:
            w.write(key, _tensors()[key])
    assert set(w.sha256) == set(w.files)
    for name, digest in w.sha256.items():
        assert hashlib.sha256((tmp_path / name).read_bytes()).hexdigest() == digest


def test_writer_removes_every_file_on_error(tmp_path):
    tensors = {f"t{i}": torch.zeros(10, 10) for i in range(5)}
    with pytest.raises(RuntimeError, match="boom"), ShardedWriter(
        tmp_path, [Entry.of(k, v) for k, v in tensors.items()], max_shard_size=100
    ) as writer:
        for key in writer.order[:4]:
            writer.write(key, tensors[key])
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_an_incomplete_checkpoint_is_refused_and_removed(tmp_path):
    tensors = {"a": torch.zeros(2), "b": torch.zeros(2)}
    with pytest.raises(InputError, match="b was never written"), ShardedWriter(
        tmp_path, [Entry.of(k, v) for k, v in tensors.items()]
    ) as writer:
        writer.write("a", tensors["a"])
    assert list(tmp_path.iterdir()) == []


def test_out_of_order_wrong_dtype_and_duplicate_tensors_are_refused(tmp_path):
    entries = [Entry("a", "F32", (2,)), Entry("b", "BF16", (2,))]
    writer = ShardedWriter(tmp_path, entries)
    with pytest.raises(InputError, match="expected a, got tensor b"):
        writer.write("b", torch.zeros(2))
    writer.write("a", torch.zeros(2))
    with pytest.raises(InputError, match=r"expected b BF16 \[2\]; got b F32 \[2\]"):
        writer.write("b", torch.zeros(2))
    writer.abort()
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(InputError, match="a is planned twice"):
        ShardedWriter(tmp_path, [Entry("a", "F32", (2,)), Entry("a", "F32", (2,))])


def test_lazy_checkpoint_reads_a_transformers_sharded_model(tmp_path):
    path = factories.make_tiny_llama(tmp_path / "m", max_shard_size="100KB")
    ckpt = LazyCheckpoint(path)
    assert len(ckpt.shards()) > 1
    assert ckpt.shape("model.layers.0.self_attn.q_proj.weight") == (64, 64)
    shard = ckpt.info("model.layers.0.self_attn.q_proj.weight").shard
    expected = load_file(str(path / shard))["model.layers.0.self_attn.q_proj.weight"]
    assert torch.equal(ckpt.get("model.layers.0.self_attn.q_proj.weight"), expected)


def test_lazy_checkpoint_reads_into_fresh_tensors(tmp_path):
    _write(tmp_path, {"w": torch.arange(6.0)})
    ckpt = LazyCheckpoint(tmp_path)
    first = ckpt.get("w")
    first.zero_()  # writable, and not shared with the file or with the next read
    assert torch.equal(ckpt.get("w"), torch.arange(6.0))


def test_missing_key_and_missing_checkpoint_are_input_errors(tmp_path):
    with pytest.raises(InputError, match="neither"):
        LazyCheckpoint(tmp_path)
    _write(tmp_path, {"w": torch.zeros(2)})
    with pytest.raises(InputError, match="not in checkpoint"):
        LazyCheckpoint(tmp_path).get("nope")


def test_truncated_file_is_a_corrupt_checkpoint_naming_it(tmp_path):
    _write(tmp_path, {"w": torch.zeros(100, 100)})
    f = tmp_path / "model.safetensors"
    f.write_bytes(f.read_bytes()[:-100])
    with pytest.raises(CorruptCheckpointError, match=r"model\.safetensors is truncated"):
        LazyCheckpoint(tmp_path)
    f.write_bytes(f.read_bytes()[:50])
    with pytest.raises(CorruptCheckpointError, match=r"model\.safetensors is truncated or corrupt"):
        LazyCheckpoint(tmp_path)


def test_a_file_truncated_after_opening_names_the_tensor_being_read(tmp_path):
    save_file({"a": torch.zeros(10), "b": torch.ones(50)}, str(tmp_path / "x.safetensors"))
    reader = SafetensorsReader(tmp_path / "x.safetensors")
    data = (tmp_path / "x.safetensors").read_bytes()
    (tmp_path / "x.safetensors").write_bytes(data[:-20])
    name = "b" if reader.header["b"]["data_offsets"][1] > reader.header["a"]["data_offsets"][1] else "a"
    with pytest.raises(CorruptCheckpointError, match=f"truncated while reading {name}"):
        reader.get(name)
    reader.close()


def test_index_naming_a_missing_shard_or_tensor_is_refused(tmp_path):
    _write(tmp_path, {"a": torch.zeros(4), "b": torch.zeros(4)}, max_shard_size=16)
    index_path = tmp_path / "model.safetensors.index.json"
    index = json.loads(index_path.read_text())
    index["weight_map"]["c"] = index["weight_map"]["a"]
    index_path.write_text(json.dumps(index))
    with pytest.raises(CorruptCheckpointError, match="tensor c is listed in .* but missing from model-00001"):
        LazyCheckpoint(tmp_path)
    index["weight_map"]["c"] = "model-00009-of-00009.safetensors"
    index_path.write_text(json.dumps(index))
    with pytest.raises(InputError, match="shard model-00009-of-00009.safetensors for tensor c"):
        LazyCheckpoint(tmp_path)
