"""The job's one device and dtype reach realignment, every gate and the judge; costs are recorded.

A registry job against the real `mlflow server` with spies around the realign and gate calls: the rule's
``device: cpu`` and ``dtype: bfloat16`` (overriding the default ``auto``) arrive at every stage, the
realign report and the version tags record what ran, and each stage's seconds and peak memory land in
nlsr_report.json and as metrics of the job's MLflow run.
"""

from __future__ import annotations

import json

import pytest

import mlflow_nlsr.gates.runner as runner
import mlflow_nlsr.service.orchestrator as orchestrator
from mlflow_nlsr.registry.client import RegistryClient
from mlflow_nlsr.registry.models import log_local_model
from tests.service.conftest import PERMISSIVE, write_config

pytestmark = pytest.mark.slow


@pytest.fixture
def spies(monkeypatch):
    seen: dict[str, list] = {"realign": [], "gate": []}
    real_realign, real_gates = orchestrator.realign, runner.run_gates

    def realign(*args, **kwargs):
        options = args[4] if len(args) > 4 else kwargs["options"]
        seen["realign"].append((options.device, options.dtype))
        return real_realign(*args, **kwargs)

    def run_gates(*args, **kwargs):
        seen["gate"].append((kwargs.get("device"), kwargs.get("dtype")))
        return real_gates(*args, **kwargs)

    monkeypatch.setattr(orchestrator, "realign", realign)
    monkeypatch.setattr(orchestrator, "run_gates", run_gates)
    return seen


def test_the_configured_device_and_dtype_reach_every_stage_and_are_recorded(
    server, models, references, model_name, make_service, tmp_path, spies
):
    config = write_config(tmp_path / "nlsr.yaml", model_name, *references, PERMISSIVE, device="cpu",
                          dtype="bfloat16", retention={"keep_work_dir": True})
    client = RegistryClient(server.url)
    _, registered = log_local_model(
        models[2], name=model_name, registered_model_name=model_name, client=client
    )
    svc = make_service(config, calibrate=False)

    outcome = svc.process_version(model_name, registered.version)

    assert outcome.state == "promoted"
    assert spies["realign"] == [("cpu", "bfloat16")]
    assert spies["gate"] == [("cpu", "bfloat16")] * 3  # fine-tuned, aligned, realigned
    job_dir = tmp_path / "work" / "jobs" / model_name / registered.version
    report = json.loads((job_dir / "realigned" / "nlsr_report.json").read_text())
    assert report["placement"] == {"device": "cpu", "dtype": "bfloat16"}
    assert report["costs"]["device"] == "cpu" and report["costs"]["dtype"] == "bfloat16"
    stages = {s["stage"]: s for s in report["costs"]["stages"]}
    assert set(stages) == {"realign", "gate_finetuned", "gate_aligned", "gate_realigned"}
    assert all(s["seconds"] > 0 and s["peak_rss_mib"] > 100 for s in stages.values())
    summary = json.loads((job_dir / "gates" / "realigned" / "metrics.json").read_text())
    assert (summary["backend"], summary["device"], summary["dtype"]) == ("hf", "cpu", "bfloat16")
    realigned = client.get_version(model_name, outcome.realigned_version)
    assert realigned.tags["nlsr.device"] == "cpu" and realigned.tags["nlsr.dtype"] == "bfloat16"
    run = client.mlflow.search_runs(
        [client.experiment_id(None)],
        filter_string=f"tags.mlflow.runName = 'nlsr-gates-{model_name}-v{registered.version}'",
    )[0]
    assert run.data.metrics["cost.realign.seconds"] == stages["realign"]["seconds"]
    assert run.data.metrics["cost.gate_realigned.peak_rss_mib"] == stages["gate_realigned"]["peak_rss_mib"]


def test_settings_override_the_rule_device(server, models, references, model_name, make_service, tmp_path,
                                           spies):
    config = write_config(tmp_path / "nlsr.yaml", model_name, *references, PERMISSIVE, device="cuda:3")
    client = RegistryClient(server.url)
    _, registered = log_local_model(
        models[2], name=model_name, registered_model_name=model_name, client=client
    )
    svc = make_service(config, calibrate=False, device="cpu", dtype="float32")

    assert svc.process_version(model_name, registered.version).state == "promoted"
    assert spies["realign"] == [("cpu", "float32")]
    assert set(spies["gate"]) == {("cpu", "float32")}
