"""Render the governance report of ``mlflow nlsr audit`` (Markdown or JSON) from jobs and audit events."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from typing import Any

KEY_METRICS = ("asr", "refusal_rate", "utility")


def _job_dict(job: Any, events: list[dict[str, Any]]) -> dict[str, Any]:
    result = job.result if isinstance(job.result, dict) else {}
    return {
        "model": job.model_name,
        "version": job.version,
        "state": str(job.state),
        "realigned_version": job.realigned_version,
        "config_sha256": job.config_sha256,
        "trigger": str(job.trigger),
        "attempts": job.attempts,
        "created_at": job.created_at.isoformat() if job.created_at else None,
        "updated_at": job.updated_at.isoformat() if job.updated_at else None,
        "verdict": (result.get("verdict") or {}).get("passed"),
        "metrics": result.get("metrics", {}),
        "reasons": result.get("reasons", []),
        "last_error": job.last_error,
        "registered_by": job.registered_by,
        "approved_by": job.approved_by,
        "promotion": result.get("promotion"),
        "events": events,
    }


def render_audit(jobs: Sequence[Any], events: Sequence[Any], fmt: str = "md") -> str:
    """Return the report; every job with its gate numbers and its full, ordered event trail."""
    by_job: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for e in events:
        by_job.setdefault((e.model_name, e.version), []).append(e.to_dict())
    data = [_job_dict(j, by_job.get((j.model_name, j.version), [])) for j in jobs]
    if fmt == "json":
        return json.dumps(data, indent=2, default=str)
    lines = ["# NLSR audit report", "", f"{len(data)} job(s).", ""]
    lines.append(
        "| model | version | state | realigned | verdict | "
        + " | ".join(f"{m} (ft → realigned)" for m in KEY_METRICS)
        + " | config |"
    )
    lines.append("|---" * (6 + len(KEY_METRICS)) + "|")
    for d in data:
        cells = []
        for m in KEY_METRICS:
            ft = d["metrics"].get("finetuned", {}).get(m)
            re_ = d["metrics"].get("realigned", {}).get(m)
            cells.append(f"{ft:.3f} → {re_:.3f}" if ft is not None and re_ is not None else "-")
        verdict = {True: "pass", False: "fail", None: "-"}[d["verdict"]]
        lines.append(
            f"| {d['model']} | {d['version']} | {d['state']} | {d['realigned_version'] or '-'} | "
            f"{verdict} | " + " | ".join(cells) + f" | {(d['config_sha256'] or '-')[:12]} |"
        )
    for d in data:
        lines += ["", f"## {d['model']} v{d['version']} — {d['state']}", ""]
        lines.append(
            f"* registered by: {d['registered_by'] or 'unknown (MLflow recorded no user)'}; "
            f"approved/rejected by: {d['approved_by'] or '-'}"
        )
        if d["reasons"]:
            lines += [f"* {r}" for r in d["reasons"]]
        if d["last_error"]:
            lines.append(f"* last error: {d['last_error']}")
        lines += ["", "| when | actor | host | event | decision | details |", "|---|---|---|---|---|---|"]
        for e in d["events"]:
            details = json.dumps(e.get("inputs") or {}, default=str)[:160]
            reasons = "; ".join(e.get("reasons") or [])[:160]
            lines.append(
                f"| {e.get('at')} | {e.get('actor')} | {e.get('host') or ''} | {e.get('event')} | "
                f"{e.get('decision') or ''} | "
                f"{details}{' — ' + reasons if reasons else ''} |"
            )
    return "\n".join(lines) + "\n"


#: the columns of ``--format csv`` (and the keys of each ``jsonl`` line)
EVENT_FIELDS = (
    "id", "at", "model_name", "version", "job_id", "event", "actor", "decision", "reasons", "inputs",
    "registered_by", "approved_by", "host", "prev_hash", "row_hash",
)  # fmt: skip


def render_events(events: Sequence[Any], fmt: str) -> str:
    """One audit row per line: ``jsonl`` (JSON objects) or ``csv`` (JSON-encoded inputs/reasons)."""
    rows = [e.to_dict() for e in events]
    if fmt == "jsonl":
        return "".join(json.dumps({k: r.get(k) for k in EVENT_FIELDS}, default=str) + "\n" for r in rows)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=EVENT_FIELDS, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        flat = {k: r.get(k) for k in EVENT_FIELDS}
        for key in ("inputs", "reasons"):
            flat[key] = json.dumps(flat[key], sort_keys=True, default=str) if flat[key] is not None else ""
        writer.writerow(flat)
    return buf.getvalue()
