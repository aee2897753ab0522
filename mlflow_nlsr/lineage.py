"""Pure lineage helpers: the tags and the model card a realigned version carries.

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
    search = calibration_search(report)
    if search is not None:
        tags["nlsr.calibration.attempts"] = str(len(search["attempts"]))
    for role, values in metrics.items():
        prefix = "nlsr.gate." if role == "realigned" else f"nlsr.gate.{role}."
        for metric, value in values.items():
            tags[prefix + metric] = _fmt(value)
    return tags


def reasons_text(verdict: Mapping[str, Any]) -> str:
    """One line per gate rule, failing ones first, capped to fit a tag."""
    reasons = sorted(verdict.get("reasons", []), key=lambda r: bool(r.get("passed")))
    text = "\n".join(str(r.get("message")) for r in reasons)
    return text[:MAX_TAG]


def model_card(
    *,
    source_uri: str,
    base_uri: str,
    aligned_uri: str,
    report: Mapping[str, Any],
    verdict: Mapping[str, Any],
    metrics: Mapping[str, Mapping[str, float]],
) -> str:
    """A markdown description that reads as a model card: what changed and the before/after numbers."""
    modules = report.get("modules", [])
    patched = [m["name"] for m in modules if m.get("patched")]
    strength = report.get("strength") or {}
    lines = [
        f"NLSR-realigned from {source_uri} (no training).",
        "",
        f"* references: base {base_uri}, aligned {aligned_uri}",
        f"* method {report.get('method')}, variant {report.get('variant')}, scorer {report.get('scorer')}, "
        f"selection {report.get('selection')}, sparsity {report.get('sparsity')}, beta {report.get('beta')}, "
        f"seed {report.get('seed')}",
        f"* patched {len(patched)} of {len(modules)} modules"
        + (
            f"; {strength.get('entries_changed')} entries changed, relative change "
            f"{strength.get('relative_change', 0):.3f}"
            if strength
            else ""
        ),
        f"* gate verdict: **{'PASSED' if verdict.get('passed') else 'FAILED'}**",
        "",
    ]
    roles = [r for r in ("aligned", "finetuned", "realigned") if r in metrics]
    names = sorted(
        {k for r in roles for k in metrics[r] if "_" not in k or k.endswith("_acc")}
        | {k for r in roles for k in metrics[r] if k in ("asr", "refusal_rate", "utility")}
    )
    if roles and names:
        lines.append("| metric | " + " | ".join(roles) + " |")
        lines.append("|---|" + "---|" * len(roles))
        for name in names:
            cells = [_fmt(metrics[r][name]) if name in metrics[r] else "-" for r in roles]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
    lines.append("Gate rules:")
    lines.extend(f"* {r.get('message')}" for r in verdict.get("reasons", []))
    return "\n".join(lines)
