"""File formats and checks: adapters, safetensors (plain reads, streamed shards), hashes, atomic dirs."""

from __future__ import annotations

from mlflow_nlsr.io.adapters import LoraAdapter, key_a, key_b, lora_scaling, read_adapter, write_adapter
from mlflow_nlsr.io.atomic import atomic_output_dir, check_output_free
from mlflow_nlsr.io.hashing import sha256_dir, sha256_file
from mlflow_nlsr.io.safetensors_io import (
    INDEX_NAME,
    SINGLE_NAME,
    LazyCheckpoint,
    SafetensorsReader,
    TensorInfo,
    dtype_name,
)
from mlflow_nlsr.io.sharded_writer import Entry, SafetensorsWriter, ShardedWriter, parse_size, plan_shards
from mlflow_nlsr.io.spill import ValueSpill
from mlflow_nlsr.io.validate import check_compatible, check_continuation, continuation_score

__all__ = [
    "INDEX_NAME",
    "SINGLE_NAME",
    "Entry",
    "LazyCheckpoint",
    "LoraAdapter",
    "SafetensorsReader",
    "SafetensorsWriter",
    "ShardedWriter",
    "TensorInfo",
    "ValueSpill",
    "atomic_output_dir",
    "check_compatible",
    "check_continuation",
    "check_output_free",
    "continuation_score",
    "dtype_name",
    "key_a",
    "key_b",
    "lora_scaling",
    "parse_size",
    "plan_shards",
    "read_adapter",
    "sha256_dir",
    "sha256_file",
    "write_adapter",
]
