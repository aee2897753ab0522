"""Sharded writing and lazy reading round-trip every tensor, with any number of shards."""

from __future__ import annotations

import json

import pytest
import torch

from mlflow_nlsr.errors import CorruptCheckpointError, InputError
from mlflow_nlsr.io import LazyCheckpoint, ShardedWriter
from tests import factories


def _tensors() -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    out = {f"layer.{i}.weight": torch.randn(16, 8, generator=gen) for i in range(10)}
    out["ids"] = torch.arange(12, dtype=torch.int64)
    out["half"] = torch.randn(4, 4, generator=gen).to(torch.bfloat16)
    return out


def test_several_shards_round_trip_with_an_index(tmp_path):
    tensors = _tensors()
    with ShardedWriter(tmp_path, max_shard_size=1200) as writer:
        for key, value in tensors.items():
            writer.add(key, value)
    shards = sorted(tmp_path.glob("model-*.safetensors"))
    assert len(shards) >= 3
    assert shards[0].name == f"model-00001-of-{len(shards):05d}.safetensors"
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"]) == set(tensors)
    assert index["metadata"]["total_size"] == sum(t.numel() * t.element_size() for t in tensors.values())
    ckpt = LazyCheckpoint(tmp_path)
    assert ckpt.keys() == sorted(tensors)
    assert len(ckpt.shards()) == len(shards)
    for key, value in tensors.items():
        assert ckpt.shape(key) == tuple(value.shape)
        got = ckpt.get(key)
        assert got.dtype == value.dtype and torch.equal(got, value)
    assert not list(tmp_path.glob(".part-*"))


def test_one_shard_is_written_as_model_safetensors(tmp_path):
    with ShardedWriter(tmp_path) as writer:
        writer.add("w", torch.ones(3, 3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]
    assert torch.equal(LazyCheckpoint(tmp_path).get("w"), torch.ones(3, 3))


def test_writer_removes_partial_shards_on_error(tmp_path):
    with pytest.raises(RuntimeError), ShardedWriter(tmp_path, max_shard_size=100) as writer:
        for i in range(5):
            writer.add(f"t{i}", torch.zeros(10, 10))
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_duplicate_keys_are_refused(tmp_path):
    with pytest.raises(ValueError, match="already written"), ShardedWriter(tmp_path) as writer:
        writer.add("w", torch.zeros(1))
        writer.add("w", torch.zeros(1))


def test_lazy_checkpoint_reads_a_transformers_sharded_model(tmp_path):
    path = factories.make_tiny_llama(tmp_path / "m", max_shard_size="100KB")
    ckpt = LazyCheckpoint(path)
    assert len(ckpt.shards()) > 1
    assert ckpt.shape("model.layers.0.self_attn.q_proj.weight") == (64, 64)


def test_missing_key_and_missing_checkpoint_are_input_errors(tmp_path):
    with pytest.raises(InputError, match="neither"):
        LazyCheckpoint(tmp_path)
    with ShardedWriter(tmp_path) as writer:
        writer.add("w", torch.zeros(2))
    with pytest.raises(InputError, match="not in checkpoint"):
        LazyCheckpoint(tmp_path).get("nope")


def test_truncated_shard_is_a_corrupt_checkpoint(tmp_path):
    with ShardedWriter(tmp_path) as writer:
        writer.add("w", torch.zeros(100, 100))
    f = tmp_path / "model.safetensors"
    f.write_bytes(f.read_bytes()[:50])
    with pytest.raises(CorruptCheckpointError, match="model.safetensors"):
        LazyCheckpoint(tmp_path)
