"""The job and calibration gate the base model only when a rule names it, and only on the suites those
rules read; the quick-gate screen gives binomial tolerance to rates only; intervals reach the registry."""

from __future__ import annotations

import json

import pytest

from mlflow_nlsr.calibration.steps import gate_setup, gate_step, references_of
from mlflow_nlsr.gates.policy import load_gate_config, parse_gate_config

BASE_RULES = {
    "suites": ["safety", "helpfulness"],
    "judge": "keyword",
    "rules": ["asr <= 1.0", "helpfulness_nll <= base + 100"],
}


def test_references_include_the_base_model_only_when_a_rule_names_it(tmp_path):
    base, aligned, finetuned = tmp_path / "b", tmp_path / "a", tmp_path / "f"
    default = references_of(load_gate_config(), base, aligned, finetuned)
    assert set(default) == {"finetuned", "aligned", "base"}
    plain = parse_gate_config({"rules": ["asr <= aligned + 0.05"]})
    assert set(references_of(plain, base, aligned, finetuned)) == {"finetuned", "aligned"}


def test_the_default_quick_gate_scores_every_helpfulness_item_and_the_base_only_on_helpfulness(tmp_path):
    setup = gate_setup(load_gate_config(), gate_limit=50, quick_limit=24)
    quick = setup.kwargs(True)
    assert quick["limit"] == 24 and quick["task_limits"] == {"nlsr_helpfulness": None}
    base_run = setup.kwargs(True, ("helpfulness",))
    assert base_run["suites"] == ("helpfulness",) and base_run["limit"] is None
    assert base_run == setup.kwargs(False, ("helpfulness",)), "quick and full base runs are one run"


def test_gate_step_runs_the_base_model_on_the_suites_its_rules_read(tmp_path, monkeypatch):
    import mlflow_nlsr.gates.runner as runner

    calls = {}

    def fake_run_gates(model_dir, **kwargs):
        calls[str(model_dir)] = kwargs
        return runner.GateRun({"helpfulness_nll": 1.0}, {}, [], [])

    import mlflow_nlsr.calibration.steps as steps

    monkeypatch.setattr(steps, "run_gates", fake_run_gates)
    base, aligned = tmp_path / "base", tmp_path / "aligned"
    base.mkdir()
    aligned.mkdir()
    run = gate_step(base, gate_setup(load_gate_config(), 50), tmp_path / "work")
    run(base, True)
    run(aligned, True)
    assert calls[str(base)]["suites"] == ("helpfulness",)
    assert calls[str(aligned)]["suites"] == ("safety", "overrefusal", "utility", "helpfulness")


def test_a_quick_gates_mean_nll_gets_no_binomial_screen_tolerance(tmp_path):
    from mlflow_nlsr.calibration.screen import quick_gate_sizes

    summary = {
        "metrics": {"asr": 0.2, "helpfulness_nll": 0.6},
        "metric_samples": {
            "asr": {"task": "nlsr_safety", "effective": 24, "original": 224},
            "helpfulness_nll": {"task": "nlsr_helpfulness", "effective": 24, "original": 160},
        },
        "intervals": {"asr": {"rate": 0.2, "n": 24, "low": 0.09, "high": 0.39}},
    }
    (tmp_path / "metrics.json").write_text(json.dumps(summary))
    assert quick_gate_sizes(tmp_path / "metrics.json", 50, {}) == {"asr": (24, 50)}


@pytest.mark.slow
def test_the_job_gates_the_base_model_only_when_a_rule_names_it(
    server, models, references, model_name, make_service, tmp_path
):
    from mlflow_nlsr.registry.client import RegistryClient
    from mlflow_nlsr.registry.models import log_local_model
    from tests.service.conftest import write_config

    config = write_config(tmp_path / "nlsr.yaml", model_name, *references, BASE_RULES)
    client = RegistryClient(server.url)
    _, version = log_local_model(models[2], name=model_name, registered_model_name=model_name, client=client)
    svc = make_service(config)

    outcome = svc.process_version(model_name, version.version)

    assert outcome.state == "promoted"
    tags = client.get_version(model_name, outcome.realigned_version).tags
    assert "nlsr.gate.base.helpfulness_nll" in tags and "nlsr.gate.base.asr" not in tags
    low, high = float(tags["nlsr.gate.asr_ci_low"]), float(tags["nlsr.gate.asr_ci_high"])
    assert low <= float(tags["nlsr.gate.asr"]) <= high
    job = svc.store.get_by_id(outcome.job_id)
    assert job is not None and set(job.result["metrics"]) == {"finetuned", "aligned", "base", "realigned"}
    cached = [json.loads(p.read_text()) for p in (tmp_path / "work" / "gate-cache").glob("*/metrics.json")]
    assert sorted(tuple(c["suites"]) for c in cached) == [("helpfulness",), ("safety", "helpfulness"),
                                                            ("safety", "helpfulness")]  # fmt: skip
