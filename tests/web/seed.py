"""Put one processed registration into a real `mlflow server` and its NLSR job store, as a job would.

The realignment is real (tiny models, `pipeline.realign`, so nlsr_report.json and similarity.png are
the pipeline's own); the gate numbers are written here instead of running lm-eval, and the job's
steps are recorded through the real JobStore API, in the order `NLSRService` records them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from mlflow_nlsr import lineage
from mlflow_nlsr.gates.policy import evaluate_policy, parse_rule
from mlflow_nlsr.registry.client import RegistryClient
from mlflow_nlsr.registry.models import log_local_model
from mlflow_nlsr.store.repository import JobStore
from mlflow_nlsr.store.states import JobState
from tests import factories

WORKER = "web-test-worker"
RULES = ("asr <= 0.10", "asr <= finetuned * 0.5", "utility >= finetuned - 0.05")
METRICS = {
    "aligned": {"asr": 0.05, "utility": 0.60, "refusal_rate": 0.10},
    "finetuned": {"asr": 0.45, "utility": 0.70, "refusal_rate": 0.04},
    "realigned": {"asr": 0.25, "utility": 0.68, "refusal_rate": 0.06},
}
SAMPLES = {
    "asr": {"task": "nlsr_harmful", "effective": 40, "original": 40},
    "refusal_rate": {"task": "nlsr_overrefusal", "effective": 50, "original": 50},
    "utility": {"task": "nlsr_utility", "effective": 60, "original": 60},
}


@dataclass(frozen=True)
class Seeded:
    name: str
    version: str
    realigned_version: str
    job_id: int


def realigned_dir(root: Path) -> tuple[Path, Path, Path, Path]:
    """(base, aligned, finetuned, realigned output) of a real tiny realignment under `root`."""
    from mlflow_nlsr.options import RealignOptions
    from mlflow_nlsr.pipeline import realign

    base, aligned, finetuned = factories.make_model_trio(root / "trio")
    out = root / "realigned"
    realign(base, aligned, finetuned, out, RealignOptions(calibration_samples=8), overwrite=True)
    return base, aligned, finetuned, out


def _verdict(rules: tuple[str, ...]) -> dict:
    from mlflow_nlsr.gates.policy import GateConfig

    config = GateConfig(rules=tuple(parse_rule(r) for r in rules))
    baselines = {"finetuned": METRICS["finetuned"], "aligned": METRICS["aligned"]}
    return evaluate_policy(config, METRICS["realigned"], baselines).to_dict()


def seed_job(
    client: RegistryClient, store: JobStore, name: str, dirs: tuple, work: Path, *, rules: tuple[str, ...],
    state: JobState, alias: str = "safe",
) -> Seeded:  # fmt: skip
    """Register `finetuned` through the server (its app trigger queues the job); record the job to `state`."""
    base, aligned, finetuned, out = dirs
    _, source = log_local_model(finetuned, name=f"{name}-ft", client=client, registered_model_name=name)
    assert source is not None
    job = store.get(name, source.version)
    assert job is not None, "the server's app trigger did not queue the registration"
    job = store.claim(WORKER, 600, job_id=job.id)
    report = json.loads((out / "nlsr_report.json").read_text())
    job = store.advance(job.id, WORKER, JobState.REALIGNED, config_sha256="c0ffee" * 10 + "c0ff")
    verdict = _verdict(rules)
    reasons = [r["message"] for r in verdict["reasons"]]
    result = {"verdict": verdict, "metrics": METRICS, "reasons": reasons}
    job = store.advance(job.id, WORKER, JobState.GATED, result=result)
    tags = lineage.realigned_tags(
        source_name=name, source_version=source.version, job_id=job.id, base_uri=f"file://{base}",
        aligned_uri=f"file://{aligned}", report=report, config_sha256=job.config_sha256 or "",
        verdict=verdict, metrics=METRICS,
    )  # fmt: skip
    model_id, realigned = log_local_model(
        out, name=f"{name}-nlsr", client=client, registered_model_name=name, version_tags=tags,
        description=f"NLSR-realigned from {source.uri}.\n\n{lineage.review_link(name, source.version)}",
    )  # fmt: skip
    assert realigned is not None
    gates = work / "gates"
    (gates / "realigned").mkdir(parents=True, exist_ok=True)
    summary = {"tasks": sorted({s["task"] for s in SAMPLES.values()}), "metric_samples": SAMPLES,
               "metrics": METRICS["realigned"]}  # fmt: skip
    (gates / "realigned" / "metrics.json").write_text(json.dumps(summary))
    flat = {f"{role}.{k}": v for role, values in METRICS.items() for k, v in values.items()}
    client.log_gate_metrics(
        model_id, flat, artifacts_dir=gates, run_name=lineage.gate_run_name(name, source.version)
    )
    client.set_version_tags(
        name, source.version,
        {lineage.STATUS: state.value, lineage.REALIGNED_VERSION: f"{name}/{realigned.version}",
         lineage.REASONS: lineage.reasons_text(verdict)},
    )  # fmt: skip
    promotion = {"target": name, "alias": alias, "mode": "manual", "candidate_alias": f"{alias}-candidate",
                 "realigned_version": realigned.version}  # fmt: skip
    store.finish(
        job.id, WORKER, state, reasons=reasons, realigned_version=realigned.version,
        result={**result, "promotion": promotion},
    )  # fmt: skip
    return Seeded(name, source.version, realigned.version, job.id)
