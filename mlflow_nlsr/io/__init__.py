"""File formats and checks: PEFT adapters, lazy/sharded safetensors, hashes, atomic output dirs."""

from __future__ import annotations

from mlflow_nlsr.io.adapters import LoraAdapter, key_a, key_b, lora_scaling, read_adapter, write_adapter
from mlflow_nlsr.io.atomic import atomic_output_dir, check_output_free
from mlflow_nlsr.io.hashing import sha256_dir, sha256_file
from mlflow_nlsr.io.safetensors_io import LazyCheckpoint, ShardedWriter
from mlflow_nlsr.io.validate import check_compatible, check_continuation, continuation_score

__all__ = [
    "LazyCheckpoint",
    "LoraAdapter",
    "ShardedWriter",
    "atomic_output_dir",
    "check_compatible",
    "check_continuation",
    "check_output_free",
    "continuation_score",
    "key_a",
    "key_b",
    "lora_scaling",
    "read_adapter",
    "sha256_dir",
    "sha256_file",
    "write_adapter",
]
