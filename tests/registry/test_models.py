"""Local HF/PEFT dirs round-trip through a real MLflow server byte-for-byte and load again.

A logged directory becomes a READY LoggedModel tagged with its format and (optionally) a registered
version whose create-call tags are kept; `models:/name/N`, `models:/name@alias` and `models:/m-…`
resolve back to a directory transformers/peft load with identical weights; unknown versions and
non-models are RegistryErrors that leave nothing behind.
"""

from __future__ import annotations

import filecmp

import pytest
import torch

from mlflow_nlsr.errors import InputError, RegistryError
from mlflow_nlsr.registry import tags as T
from mlflow_nlsr.registry.client import is_realigned
from mlflow_nlsr.registry.models import log_local_model
from mlflow_nlsr.registry.uris import resolve_to_local


def _same_files(a, b) -> bool:
    names = sorted(p.name for p in a.iterdir())
    match, mismatch, errors = filecmp.cmpfiles(a, b, names, shallow=False)
    return sorted(match) == names and not mismatch and not errors


@pytest.fixture(scope="module")
def hf_version(registry, tiny_hf_dir):
    """(name, model_id, VersionInfo) of the tiny HF checkpoint registered as version 1."""
    name = "nlsr-test-hf"
    model_id, version = log_local_model(
        tiny_hf_dir,
        name="tiny-llama",
        tags={"nlsr.role": "finetuned"},
        params={"seed": 0},
        registered_model_name=name,
        version_tags={"nlsr.source": "finetune"},
        description="tiny SFT checkpoint",
        client=registry,
    )
    return name, model_id, version


def test_logging_an_hf_dir_registers_a_version_with_create_call_tags(registry, hf_version):
    name, model_id, version = hf_version
    assert version is not None and (version.name, version.version) == (name, "1")
    assert version.source == f"models:/{model_id}" and version.model_id == model_id
    again = registry.get_version(name, 1)
    assert again.tags["nlsr.source"] == "finetune" and again.description == "tiny SFT checkpoint"
    logged = registry.mlflow.get_logged_model(model_id)
    assert str(logged.status) == "READY"
    assert logged.tags[T.FORMAT] == "hf_dir" and logged.tags["nlsr.role"] == "finetuned"
    assert logged.params["seed"] == "0"
    assert not is_realigned(again)


def test_a_version_resolves_to_the_identical_checkpoint_that_transformers_loads(
    registry, hf_version, tiny_hf_dir, tmp_path
):
    from transformers import AutoModelForCausalLM

    name, _, _ = hf_version
    local = resolve_to_local(f"models:/{name}/1", tmp_path, registry)
    assert local.is_relative_to(tmp_path) and _same_files(tiny_hf_dir, local)
    got = AutoModelForCausalLM.from_pretrained(local).state_dict()
    want = AutoModelForCausalLM.from_pretrained(tiny_hf_dir).state_dict()
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)


def test_an_alias_and_a_logged_model_uri_resolve_too(registry, hf_version, tiny_hf_dir, tmp_path):
    name, model_id, _ = hf_version
    registry.set_alias(name, "candidate", 1)
    assert registry.get_alias_version(name, "candidate").version == "1"
    assert "candidate" in registry.get_version(name, 1).aliases
    assert _same_files(tiny_hf_dir, resolve_to_local(f"models:/{name}@candidate", tmp_path / "a", registry))
    assert _same_files(tiny_hf_dir, resolve_to_local(f"models:/{model_id}", tmp_path / "m", registry))


def test_a_peft_adapter_round_trips_and_peft_loads_it(
    registry, tiny_hf_dir, tiny_peft_dir, model_name, tmp_path
):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model_id, version = log_local_model(
        tiny_peft_dir, name="tiny-lora", registered_model_name=model_name, client=registry
    )
    assert version is not None
    assert registry.mlflow.get_logged_model(model_id).tags[T.FORMAT] == "peft_adapter"
    local = resolve_to_local(version.uri, tmp_path, registry)
    assert (local / "adapter_config.json").is_file() and _same_files(tiny_peft_dir, local)
    base = AutoModelForCausalLM.from_pretrained(tiny_hf_dir)
    peft_model = PeftModel.from_pretrained(base, str(local))
    lora_a = [p for n, p in peft_model.named_parameters() if "lora_A" in n]
    assert lora_a and all(p.abs().sum() > 0 for p in lora_a)


def test_logging_without_registering_returns_no_version(registry, tiny_peft_dir):
    model_id, version = log_local_model(tiny_peft_dir, name="unregistered", client=registry)
    assert version is None and model_id.startswith("m-")


def test_a_directory_that_is_no_model_cannot_be_logged(registry, tmp_path):
    (tmp_path / "readme.md").write_text("not weights")
    with pytest.raises(InputError, match="readme.md"):
        log_local_model(tmp_path, name="x", client=registry)


def test_a_failed_upload_marks_the_logged_model_failed(registry, tiny_peft_dir, monkeypatch):
    from mlflow.exceptions import MlflowException

    created: list[str] = []
    real_create = registry.mlflow.create_logged_model

    def spy_create(*args, **kwargs):
        logged = real_create(*args, **kwargs)
        created.append(logged.model_id)
        return logged

    def broken_upload(model_id, local_dir, artifact_path=None):
        raise MlflowException("disk full")

    monkeypatch.setattr(registry.mlflow, "create_logged_model", spy_create)
    monkeypatch.setattr(registry.mlflow, "log_model_artifacts", broken_upload)
    with pytest.raises(RegistryError, match="disk full"):
        log_local_model(tiny_peft_dir, name="doomed", registered_model_name="never", client=registry)
    monkeypatch.undo()
    assert len(created) == 1 and str(registry.mlflow.get_logged_model(created[0]).status) == "FAILED"


@pytest.mark.parametrize("version", ["99", "1"])
def test_unknown_or_deleted_versions_are_registry_errors(
    registry, hf_version, tiny_peft_dir, version, tmp_path
):
    name, _, _ = hf_version
    if version == "1":  # a separate model whose only version is deleted
        name = f"{name}-deleted"
        _, v = log_local_model(tiny_peft_dir, name="tmp", registered_model_name=name, client=registry)
        registry.mlflow.delete_model_version(name, v.version)
    with pytest.raises(RegistryError, match=rf"{name}/{version}.*not found"):
        resolve_to_local(f"models:/{name}/{version}", tmp_path, registry)
    assert list(tmp_path.iterdir()) == []


def test_an_unset_alias_is_a_registry_error(registry, hf_version, tmp_path):
    with pytest.raises(RegistryError, match="nobody"):
        resolve_to_local(f"models:/{hf_version[0]}@nobody", tmp_path, registry)


def test_a_uri_pointing_at_a_non_model_is_a_registry_error_that_cleans_up(registry, model_name, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "notes.txt").write_text("just notes")
    logged = registry.mlflow.create_logged_model("0", name="notes")
    registry.mlflow.log_model_artifacts(logged.model_id, str(src))
    registry.mlflow.finalize_logged_model(logged.model_id, "READY")
    version = registry.create_version(model_name, f"models:/{logged.model_id}", model_id=logged.model_id)
    dest = tmp_path / "dest"
    with pytest.raises(RegistryError, match=r"is not a model: expected an HF checkpoint.*found: notes.txt"):
        resolve_to_local(version.uri, dest, registry)
    assert list(dest.iterdir()) == []


def test_tags_description_and_alias_read_back(registry, hf_version, tiny_peft_dir, model_name):
    _, v = log_local_model(tiny_peft_dir, name="t", registered_model_name=model_name, client=registry)
    registry.set_version_tags(model_name, v.version, {T.STATUS: "running", T.REALIGNED: "true"})
    registry.set_description(model_name, v.version, "realigned, gate PASSED")
    registry.set_alias(model_name, "safe", v.version)
    got = registry.get_version(model_name, v.version)
    assert got.tags[T.STATUS] == "running" and is_realigned(got)
    assert got.description == "realigned, gate PASSED" and got.aliases == ("safe",)
    registry.delete_version_tag(model_name, v.version, T.STATUS)
    assert T.STATUS not in registry.get_version(model_name, v.version).tags


def test_search_without_tag_finds_only_untagged_versions(registry, tiny_peft_dir, model_name):
    versions = [
        log_local_model(tiny_peft_dir, name="s", registered_model_name=model_name, client=registry)[1]
        for _ in range(3)
    ]
    registry.set_version_tags(model_name, versions[1].version, {T.STATUS: "queued"})
    found = registry.search_versions_without_tag(T.STATUS, name_glob=model_name)
    assert sorted(v.version for v in found) == sorted([versions[0].version, versions[2].version])
    by_glob = registry.search_versions_without_tag(T.STATUS, name_glob=model_name[:-3] + "*")
    assert {(v.name, v.version) for v in found} <= {(v.name, v.version) for v in by_glob}
    assert all(T.STATUS not in v.tags for v in registry.search_versions_without_tag())


def test_gate_metrics_are_linked_to_the_logged_model_in_a_finished_run(registry, hf_version, tmp_path):
    _, model_id, _ = hf_version
    (tmp_path / "lm_eval.json").write_text('{"results": {}}')
    run_id = registry.log_gate_metrics(
        model_id, {"safety_refusal_rate": 0.93, "utility_acc": 0.61}, {"limit": 8}, tmp_path,
        experiment="nlsr-gates", run_name="gate",
    )  # fmt: skip
    run = registry.mlflow.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.params == {"limit": "8"}
    assert run.data.metrics == {"safety_refusal_rate": 0.93, "utility_acc": 0.61}
    assert [a.path for a in registry.mlflow.list_artifacts(run_id)] == ["lm_eval.json"]
    metrics = {m.key: m.value for m in registry.mlflow.get_logged_model(model_id).metrics or []}
    assert metrics == {"safety_refusal_rate": 0.93, "utility_acc": 0.61}
