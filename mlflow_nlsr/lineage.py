"""Pure lineage helpers: the tags a realigned version carries (its model card: service/model_card.py).

No MLflow and no I/O here: ``service`` feeds in the realignment report, gate metrics and verdict,
and registers what comes out. Tag keys are documented in docs/registry.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mlflow_nlsr.report_sections import calibration_search

REALIGNED = "nlsr.realigned"
STATUS = "nlsr.status"
REALIGNED_VERSION = "nlsr.realigned_version"
SOURCE_VERSION = "nlsr.source_version"
SOURCE_MODEL = "nlsr.source_model"
JOB_ID = "nlsr.job_id"
ERROR = "nlsr.error"
REASONS = "nlsr.reasons"

#: tag values are capped by MLflow (8000 chars for version tags); keep reasons readable and short
MAX_TAG = 4000


def _fmt(value: float) -> str:
    return f"{value:.4f}"


def realigned_tags(
    *,
    source_name: str,
    source_version: str,
    job_id: int,
    base_uri: str,
    aligned_uri: str,
    report: Mapping[str, Any],
    config_sha256: str,
    verdict: Mapping[str, Any],
    metrics: Mapping[str, Mapping[str, float]],
) -> dict[str, str]:
    """Tags of the realigned version (sent in the create call, so webhooks see ``nlsr.realigned``)."""
    tags = {
        REALIGNED: "true",
        STATUS: "output",  # a status of its own, so the poller never picks a realigned version up
        SOURCE_MODEL: source_name,
        SOURCE_VERSION: str(source_version),
        JOB_ID: str(job_id),
        "nlsr.base_uri": base_uri,
        "nlsr.aligned_uri": aligned_uri,
        "nlsr.method": str(report.get("method")),
        "nlsr.variant": str(report.get("variant")),
        "nlsr.scorer": str(report.get("scorer")),
        "nlsr.selection": str(report.get("selection")),
        "nlsr.mode": str(report.get("mode", "lora")),
        "nlsr.config_sha256": config_sha256,
        "nlsr.patched_modules": str(sum(1 for m in report.get("modules", []) if m.get("patched"))),
        "nlsr.total_modules": str(len(report.get("modules", []))),
        "nlsr.output_sha256": str(report.get("output_sha256")),
        "nlsr.verdict": "passed" if verdict.get("passed") else "failed",
    }
    costs = report.get("costs")
    if isinstance(costs, Mapping):  # what the job ran on (service/costs.py)
        tags["nlsr.device"], tags["nlsr.dtype"] = str(costs.get("device")), str(costs.get("dtype"))
    search = calibration_search(report)
    if search is not None:
        tags["nlsr.calibration.attempts"] = str(len(search["attempts"]))
    for role, values in metrics.items():
        prefix = "nlsr.gate." if role == "realigned" else f"nlsr.gate.{role}."
        for metric, value in values.items():
            tags[prefix + metric] = _fmt(value)
    return tags


def slug(name: str) -> str:
    """A registered-model name made safe for file and run names."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def gate_run_name(model_name: str, version: str | int) -> str:
    """The name of the MLflow run a job logs its gate metrics and metrics.json under."""
    return f"nlsr-gates-{slug(model_name)}-v{version}"


def review_path(model_name: str, version: str | int) -> str:
    """The server path of the NLSR review page of a source version (``mlflow server --app-name nlsr``)."""
    from urllib.parse import quote

    return f"/nlsr/models/{quote(model_name, safe='')}/versions/{quote(str(version), safe='')}"


def review_link(model_name: str, version: str | int) -> str:
    """The model card's line linking MLflow's version page to the NLSR review page of its source."""
    return (
        f"[Review this repair in NLSR: verdict, gate rules, metrics, audit trail]"
        f"({review_path(model_name, version)})"
    )


def reasons_text(verdict: Mapping[str, Any]) -> str:
    """One line per gate rule, failing ones first, capped to fit a tag."""
    reasons = sorted(verdict.get("reasons", []), key=lambda r: bool(r.get("passed")))
    text = "\n".join(str(r.get("message")) for r in reasons)
    return text[:MAX_TAG]
