"""The vllm gate backend builds lm-eval's vllm model arguments from a gate config, without vLLM installed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow_nlsr_vllm import VLLMBackend

from mlflow_nlsr.errors import ConfigError
from mlflow_nlsr.gates.backends import BACKENDS, GateTarget, create_backend
from mlflow_nlsr.gates.policy import parse_gate_config


def _adapter(path: Path, r: int = 16, rank_pattern: dict | None = None) -> Path:
    path.mkdir()
    config = {"r": r, "lora_alpha": 32, "peft_type": "LORA", "rank_pattern": rank_pattern or {}}
    (path / "adapter_config.json").write_text(json.dumps(config))
    return path


def test_the_plugin_is_the_vllm_gate_backend():
    assert "vllm" in BACKENDS.names() and BACKENDS.get("vllm") is VLLMBackend


def test_a_lora_is_served_on_its_base_with_the_rank_from_its_config(tmp_path):
    config = parse_gate_config({
        "rules": ["asr <= 0.1"], "backend": "vllm", "dtype": "bfloat16",
        "backend_options": {"gpu_memory_utilization": 0.85, "max_model_len": 4096, "tensor_parallel_size": 2},
    })
    backend = create_backend(config.backend, dict(config.backend_options))
    adapter = _adapter(tmp_path / "adapter", r=16, rank_pattern={"q_proj": 64})
    target = GateTarget(tmp_path / "base", adapter, "cuda:0", config.dtype or "auto", "auto")

    args = backend.model_args(target)

    assert args == {
        "pretrained": str(tmp_path / "base"), "dtype": "bfloat16", "batch_size": "auto",
        "tensor_parallel_size": 2, "data_parallel_size": 1, "lora_local_path": str(adapter),
        "enable_lora": True, "max_lora_rank": 64, "gpu_memory_utilization": 0.85, "max_model_len": 4096,
    }


def test_a_merged_or_full_dir_is_served_directly_with_any_engine_argument(tmp_path):
    backend = VLLMBackend(data_parallel_size=4, max_num_seqs=128, quantization="fp8")
    args = backend.model_args(GateTarget(tmp_path / "merged", None, "auto", "auto", 8))
    assert args["pretrained"] == str(tmp_path / "merged") and "lora_local_path" not in args
    assert (args["data_parallel_size"], args["max_num_seqs"], args["quantization"]) == (4, 128, "fp8")
    assert args["dtype"] == "auto" and args["batch_size"] == 8


def test_the_device_index_becomes_cuda_visible_devices(tmp_path):
    backend = VLLMBackend()
    assert backend.visible_devices(GateTarget(tmp_path, None, "cuda:3")) == "3"
    assert backend.visible_devices(GateTarget(tmp_path, None, "auto")) is None


def test_options_the_backend_derives_cannot_be_set(tmp_path):
    with pytest.raises(ConfigError, match="lora_local_path"):
        VLLMBackend(lora_local_path="/elsewhere")


def test_without_vllm_building_names_the_install_command(tmp_path):
    pytest.importorskip("lm_eval")
    import importlib.util

    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vLLM is installed here")
    with pytest.raises(ConfigError, match="pip install vllm"):
        VLLMBackend().build(GateTarget(tmp_path, None, "auto", "auto"))
