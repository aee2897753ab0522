"""process_version realigns, gates, registers with lineage and promotes only on a passing verdict.

Against a real `mlflow server` (SQLite) with tiny models and tiny gates (2 items per task). A rerun of a
finished job changes nothing: exactly one realigned version per source version.
"""

from __future__ import annotations

import json

import pytest

from mlflow_nlsr.errors import ConfigError
from mlflow_nlsr.registry.client import RegistryClient
from mlflow_nlsr.registry.models import log_local_model
from tests.service.conftest import PERMISSIVE, STRICT, write_config

pytestmark = pytest.mark.slow


def _register_finetuned(server, models, name, **tags):
    client = RegistryClient(server.url)
    _, version = log_local_model(
        models[2], name=name, registered_model_name=name, version_tags=tags, client=client
    )
    return client, version.version


def test_a_passing_version_is_realigned_registered_with_lineage_and_promoted(
    server, models, references, model_name, make_service, tmp_path
):
    keep = {"keep_work_dir": True}  # the test reads the job's dir after it settles
    config = write_config(tmp_path / "nlsr.yaml", model_name, *references, PERMISSIVE, retention=keep)
    client, version = _register_finetuned(server, models, model_name)
    svc = make_service(config)

    outcome = svc.process_version(model_name, version)

    assert outcome.state == "promoted"
    realigned = client.get_version(model_name, outcome.realigned_version)
    assert realigned.tags["nlsr.realigned"] == "true"
    assert realigned.tags["nlsr.source_version"] == version
    assert realigned.tags["nlsr.base_uri"] == references[0]
    assert realigned.tags["nlsr.aligned_uri"] == references[1]
    assert realigned.tags["nlsr.verdict"] == "passed"
    assert realigned.tags["nlsr.scorer"] == "magnitude"
    for key in (
        "nlsr.method",
        "nlsr.variant",
        "nlsr.config_sha256",
        "nlsr.patched_modules",
        "nlsr.output_sha256",
        "nlsr.gate.asr",
        "nlsr.gate.finetuned.asr",
        "nlsr.gate.utility",
    ):
        assert key in realigned.tags, key
    assert "NLSR-realigned from" in (realigned.description or "")
    assert not any(k.startswith("nlsr.gate.base.") for k in realigned.tags), "no rule names the base model"
    assert client.get_alias_version(model_name, "safe").version == outcome.realigned_version
    source = client.get_version(model_name, version)
    assert source.tags["nlsr.status"] == "promoted"
    assert source.tags["nlsr.realigned_version"] == f"{model_name}/{outcome.realigned_version}"
    report = json.loads(
        (tmp_path / "work" / "jobs" / model_name / version / "realigned" / "nlsr_report.json").read_text()
    )
    assert str(sum(m["patched"] for m in report["modules"])) == realigned.tags["nlsr.patched_modules"]

    again = svc.process_version(model_name, version)
    assert again.state == "promoted" and again.realigned_version == outcome.realigned_version
    versions = client.search_versions(f"name = '{model_name}'")
    assert len(versions) == 2, "a rerun must not register a second realigned version"
    events = [e.event for e in svc.store.audit_trail(model_name, version)]
    assert events[:2] == ["enqueued", "claimed"] and "promoted" in events


def test_a_failing_verdict_records_reasons_and_never_moves_the_alias(
    server, models, references, model_name, make_service, tmp_path
):
    config = write_config(tmp_path / "nlsr.yaml", model_name, *references, STRICT)
    client, version = _register_finetuned(server, models, model_name)

    outcome = make_service(config).process_version(model_name, version)

    assert outcome.state == "rejected"
    assert any("FAIL" in r and "asr" in r for r in outcome.reasons)
    source = client.get_version(model_name, version)
    assert source.tags["nlsr.status"] == "rejected"
    assert "FAIL: asr" in source.tags["nlsr.reasons"]
    assert client.get_version(model_name, outcome.realigned_version).tags["nlsr.verdict"] == "failed"
    with pytest.raises(Exception):  # noqa: B017 - any registry error: the alias must not exist
        client.get_alias_version(model_name, "safe")


def test_a_version_without_rule_or_reference_tags_is_skipped_and_audited(
    server, models, references, model_name, make_service, tmp_path
):
    config = write_config(tmp_path / "nlsr.yaml", "some-other-model", *references, PERMISSIVE)
    client, version = _register_finetuned(server, models, model_name)
    svc = make_service(config)

    outcome = svc.process_version(model_name, version)

    assert outcome.state == "skipped"
    assert client.get_version(model_name, version).tags["nlsr.status"] == "skipped"
    assert svc.store.audit_trail(model_name, version)[-1].decision == "skipped"


def test_version_tags_alone_describe_the_references(
    server, models, references, model_name, make_service, tmp_path
):
    config = write_config(tmp_path / "nlsr.yaml", "unrelated-*", "models:/x/1", "models:/y/1", PERMISSIVE)
    config.write_text(config.read_text().replace("models:\n", "models: []\nunused:\n", 0))
    client, version = _register_finetuned(
        server, models, model_name, **{"nlsr.base_uri": references[0], "nlsr.aligned_uri": references[1]}
    )
    svc = make_service(None, gate_limit=1)

    outcome = svc.process_version(model_name, version)

    # no gate config in a rule: the shipped default gates decide (a random tiny model fails them)
    assert outcome.state in {"promoted", "rejected"}
    assert client.get_version(model_name, outcome.realigned_version).tags["nlsr.base_uri"] == references[0]


def test_realigned_versions_are_never_realigned_again(
    server, models, references, model_name, make_service, tmp_path
):
    config = write_config(tmp_path / "nlsr.yaml", model_name, *references, PERMISSIVE)
    _, version = _register_finetuned(server, models, model_name, **{"nlsr.realigned": "true"})
    svc = make_service(config)

    with pytest.raises(ConfigError, match="registered by NLSR"):
        svc.process_version(model_name, version)
    assert svc.store.get(model_name, version) is None


def test_with_promotion_disabled_a_passing_version_is_registered_but_the_alias_stays(
    server, models, references, model_name, make_service, tmp_path
):
    config = write_config(tmp_path / "nlsr.yaml", model_name, *references, PERMISSIVE)
    client, version = _register_finetuned(server, models, model_name)

    outcome = make_service(config, promote=False).process_version(model_name, version)

    assert outcome.state == "registered"
    assert client.get_version(model_name, outcome.realigned_version).tags["nlsr.verdict"] == "passed"
    assert client.get_version(model_name, version).tags["nlsr.status"] == "registered"
    with pytest.raises(Exception):  # noqa: B017 - the alias must not exist
        client.get_alias_version(model_name, "safe")
