"""Model URIs are classified unambiguously and a model directory is found at the root or one level down.

Anything else — a malformed `models:/` URI, a stage URI, a directory without a checkpoint or adapter,
several candidate checkpoints — is a RegistryError that says what was expected and what was found.
"""

from __future__ import annotations

import shutil

import pytest

from mlflow_nlsr.errors import RegistryError
from mlflow_nlsr.registry.uris import detect_format, find_model_dir, model_id_from_source, parse_model_uri


@pytest.mark.parametrize(
    "uri, kind, fields",
    [
        ("models:/chat/3", "version", {"name": "chat", "version": "3", "subpath": ""}),
        ("models:/chat/3/model", "version", {"name": "chat", "version": "3", "subpath": "model"}),
        ("models:/chat@safe", "alias", {"name": "chat", "alias": "safe"}),
        ("models:/m-7bb93eb35cac4152b0a5b3b9b51b243e", "logged_model",
         {"model_id": "m-7bb93eb35cac4152b0a5b3b9b51b243e"}),
        ("runs:/abc123/model", "run", {"run_id": "abc123", "subpath": "model"}),
        ("s3://bucket/ckpt", "artifact", {}),
        ("mlflow-artifacts:/1/models/m-1/artifacts", "artifact", {}),
    ],
)  # fmt: skip
def test_uris_are_classified(uri, kind, fields):
    ref = parse_model_uri(uri)
    assert ref.kind == kind
    for key, value in fields.items():
        assert getattr(ref, key) == value


def test_local_paths_and_file_uris_are_local(tmp_path):
    assert parse_model_uri(str(tmp_path)).path == tmp_path
    assert parse_model_uri(f"file://{tmp_path}").path == tmp_path
    assert parse_model_uri("relative/dir").kind == "local"


@pytest.mark.parametrize(
    "uri", ["models:/chat", "models:/chat/Production", "models:/@safe", "models:/chat@", ""]
)
def test_malformed_or_stage_models_uris_are_refused(uri):
    with pytest.raises(RegistryError, match="expected"):
        parse_model_uri(uri)


def test_model_id_is_parsed_from_a_logged_model_source():
    assert (
        model_id_from_source("models:/m-7bb93eb35cac4152b0a5b3b9b51b243e")
        == "m-7bb93eb35cac4152b0a5b3b9b51b243e"
    )
    assert model_id_from_source("models:/chat/2") is None
    assert model_id_from_source("runs:/abc/model") is None
    assert model_id_from_source(None) is None


def test_hf_and_peft_dirs_are_detected(tiny_hf_dir, tiny_peft_dir):
    assert detect_format(tiny_hf_dir) == "hf_dir"
    assert detect_format(tiny_peft_dir) == "peft_adapter"


def test_a_model_one_level_down_is_found(tiny_hf_dir, tmp_path):
    shutil.copytree(tiny_hf_dir, tmp_path / "model")
    (tmp_path / "MLmodel").write_text("x")
    (tmp_path / "components").mkdir()
    assert find_model_dir(tmp_path) == (tmp_path / "model", "hf_dir")


def test_a_config_without_weights_is_not_a_model(tmp_path, tiny_hf_dir):
    shutil.copy(tiny_hf_dir / "config.json", tmp_path / "config.json")
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(RegistryError, match=r"not a model.*found: config.json, notes.txt"):
        find_model_dir(tmp_path)


def test_two_candidate_models_are_ambiguous(tiny_hf_dir, tiny_peft_dir, tmp_path):
    shutil.copytree(tiny_hf_dir, tmp_path / "model")
    shutil.copytree(tiny_peft_dir, tmp_path / "peft")
    with pytest.raises(RegistryError, match=r"ambiguous.*model/ \(hf_dir\).*peft/ \(peft_adapter\)"):
        find_model_dir(tmp_path)


def test_models_two_levels_down_are_not_searched(tiny_hf_dir, tmp_path):
    shutil.copytree(tiny_hf_dir, tmp_path / "a" / "b")
    with pytest.raises(RegistryError, match="one level down"):
        find_model_dir(tmp_path)
