"""Gate backends: hf is built in, vllm is a plugin named by its install command when missing."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from mlflow_nlsr.cli import cli
from mlflow_nlsr.errors import ConfigError
from mlflow_nlsr.gates.backends import BACKENDS, CPU_AUTO_BATCH, GateTarget, HFBackend, create_backend
from mlflow_nlsr.gates.policy import parse_gate_config


@pytest.fixture
def without_vllm_plugin(monkeypatch):
    points = {k: v for k, v in BACKENDS._entry_points().items() if k != "vllm"}  # a copy: the cache stays
    monkeypatch.setattr(BACKENDS, "_entry_points", lambda: points)


def test_hf_is_the_built_in_backend():
    assert "hf" in BACKENDS.names()
    assert isinstance(create_backend("hf"), HFBackend)


def test_a_missing_vllm_plugin_names_the_install_command(without_vllm_plugin):
    with pytest.raises(ConfigError, match=r"pip install -e plugins/mlflow-nlsr-vllm .*pip install vllm"):
        create_backend("vllm")


def test_an_unknown_backend_suggests_the_close_name():
    with pytest.raises(ConfigError, match="Did you mean: hf"):
        create_backend("hff")


def test_gate_backend_vllm_without_the_plugin_exits_with_the_install_command(
    without_vllm_plugin, tiny_base, tmp_path
):
    result = CliRunner().invoke(
        cli, ["gate", "--model", str(tiny_base), "--output", str(tmp_path / "out"), "--backend", "vllm"]
    )
    assert result.exit_code == ConfigError.exit_code
    assert "pip install -e plugins/mlflow-nlsr-vllm" in result.output


def test_auto_batch_size_is_lm_eval_auto_on_a_gpu_and_a_fixed_size_on_the_cpu(tmp_path):
    hf = HFBackend()
    assert hf.batch_size(GateTarget(tmp_path, batch_size="auto"), "cuda:0") == "auto"
    assert hf.batch_size(GateTarget(tmp_path, batch_size="auto"), "cpu") == CPU_AUTO_BATCH
    assert hf.batch_size(GateTarget(tmp_path, batch_size=4), "cuda:0") == 4


def test_the_gate_config_carries_backend_device_and_dtype():
    config = parse_gate_config({"rules": ["asr <= 0.1"], "backend": "vllm", "device": "cuda:1",
                                "backend_options": {"max_model_len": 2048}})
    kwargs = config.run_kwargs()
    assert (kwargs["backend"], kwargs["device"], kwargs["dtype"]) == ("vllm", "cuda:1", "auto")
    assert kwargs["backend_options"] == {"max_model_len": 2048}
    assert config.placed("cpu", "float32").run_kwargs()["device"] == "cuda:1"  # the config's own wins
    plain = parse_gate_config({"rules": ["asr <= 0.1"]}).placed("cpu", "bfloat16").run_kwargs()
    assert (plain["device"], plain["dtype"]) == ("cpu", "bfloat16") and "backend" not in plain
    with pytest.raises(ConfigError, match="device must be"):
        parse_gate_config({"rules": ["asr <= 0.1"], "device": "gpu"})
