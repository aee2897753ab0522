"""The registry job calibrates by default and records every attempt: report, nested runs, audit, version tags.

Against a real `mlflow server` with tiny models and 2-item gates. A permissive gate passes the first
rung; a gate nothing passes rejects the version with the calibration's list of attempts among the
reasons; ``calibrate=False`` realigns once with the configured options.
"""

from __future__ import annotations

import json

import pytest

from mlflow_nlsr.registry.client import RegistryClient
from mlflow_nlsr.registry.models import log_local_model
from tests.service.conftest import PERMISSIVE, STRICT, write_config

pytestmark = pytest.mark.slow


def _register(server, models, name):
    client = RegistryClient(server.url)
    _, version = log_local_model(models[2], name=name, registered_model_name=name, client=client)
    return client, version.version


def _child_runs(client, parent_name):
    parents = client.mlflow.search_runs(["0"], filter_string=f"attributes.run_name = '{parent_name}'")
    assert len(parents) == 1, parent_name
    parent = parents[0].info.run_id
    children = client.mlflow.search_runs(["0"], filter_string=f"tags.`mlflow.parentRunId` = '{parent}'")
    return sorted(children, key=lambda r: int(r.data.tags["nlsr.calibration.attempt"]))


def test_a_job_calibrates_by_default_and_records_every_attempt(
    server, models, references, model_name, make_service, tmp_path
):
    keep = {"keep_work_dir": True}  # the test reads the job's dir after it settles
    config = write_config(tmp_path / "nlsr.yaml", model_name, *references, PERMISSIVE, retention=keep)
    client, version = _register(server, models, model_name)
    svc = make_service(config)

    outcome = svc.process_version(model_name, version)

    assert outcome.state == "promoted"
    job_dir = tmp_path / "work" / "jobs" / model_name / version
    report = json.loads((job_dir / "realigned" / "nlsr_report.json").read_text())
    section = report["calibration_search"]
    assert section["passed"] and section["chosen"] == 1 and len(section["attempts"]) == 1
    # the lightest rung keeps the defaults' module choice (all) and moves more entries, more gently
    assert section["chosen_options"] == {"sparsity": 0.6, "beta": 0.6}
    assert report["sparsity"] == 0.6 and report["beta"] == 0.6 and report["scorer"] == "magnitude"
    gate_metrics = json.loads((job_dir / "gates" / "realigned" / "metrics.json").read_text())["metrics"]
    assert gate_metrics == section["attempts"][0]["quick"]["metrics"], "the job reused the calibration gate"
    tags = client.get_version(model_name, outcome.realigned_version).tags
    assert tags["nlsr.calibration.attempts"] == "1" and tags["nlsr.calibration.passed"] == "true"
    assert json.loads(tags["nlsr.calibration.chosen"]) == {"beta": 0.6, "sparsity": 0.6}
    assert tags["nlsr.calibration.rung"] == "sp0.6-modall-b0.6"
    events = [e.event for e in svc.store.audit_trail(model_name, version)]
    assert events.count("calibration_attempt") == 1 and "calibrated" in events
    assert events.index("calibrated") < events.index("promoted")
    attempt_event = next(
        e for e in svc.store.audit_trail(model_name, version) if e.event == "calibration_attempt"
    )
    assert attempt_event.decision == "passed" and attempt_event.inputs["rung"] == "sp0.6-modall-b0.6"
    children = _child_runs(client, f"nlsr-gates-{model_name}-v{version}")
    assert len(children) == 1
    child = children[0]
    assert child.data.tags["nlsr.calibration.chosen"] == "true" and child.data.params["sparsity"] == "0.6"
    assert child.data.metrics["quick.asr"] == pytest.approx(gate_metrics["asr"])
    assert child.data.metrics["strength.relative_change"] > 0


def test_a_job_nothing_passes_is_rejected_with_the_list_of_attempts(
    server, models, references, model_name, make_service, tmp_path
):
    config = write_config(tmp_path / "nlsr.yaml", model_name, *references, STRICT)
    client, version = _register(server, models, model_name)
    svc = make_service(config, calibration_max_attempts=2)

    outcome = svc.process_version(model_name, version)

    assert outcome.state == "rejected"
    # two climbing attempts, then the configured options judged by the full gate (the fallback)
    assert any("no passing configuration in 3 attempt(s)" in r for r in outcome.reasons)
    assert any(r.startswith("FAIL: asr") for r in outcome.reasons)
    tags = client.get_version(model_name, outcome.realigned_version).tags
    assert tags["nlsr.calibration.attempts"] == "3" and tags["nlsr.calibration.passed"] == "false"
    assert len(_child_runs(client, f"nlsr-gates-{model_name}-v{version}")) == 3
    events = [e.event for e in svc.store.audit_trail(model_name, version)]
    assert events.count("calibration_attempt") == 3


def test_calibration_can_be_switched_off(server, models, references, model_name, make_service, tmp_path):
    keep = {"keep_work_dir": True}  # the test reads the job's dir after it settles
    config = write_config(tmp_path / "nlsr.yaml", model_name, *references, PERMISSIVE, retention=keep)
    client, version = _register(server, models, model_name)

    outcome = make_service(config, calibrate=False).process_version(model_name, version)

    assert outcome.state == "promoted"
    report = json.loads(
        (tmp_path / "work" / "jobs" / model_name / version / "realigned" / "nlsr_report.json").read_text()
    )
    assert "calibration_search" not in report and "calibration" not in report and report["sparsity"] == 0.8
    tags = client.get_version(model_name, outcome.realigned_version).tags
    assert not any(k.startswith("nlsr.calibration.") for k in tags)
