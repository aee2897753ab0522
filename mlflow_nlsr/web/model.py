"""What the NLSR pages show, computed from plain values (job rows, audit events, reports): no Flask, no I/O.

The views fetch a job, its audit trail, the gate run's ``metrics.json`` and the realigned version's
``nlsr_report.json``; the functions here turn them into rows a template prints as they are.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from mlflow_nlsr.gates.stats import Interval, interval_of_rate
from mlflow_nlsr.store.tables import AuditEvent, Job

#: the state a governed job waits in for a person's decision (service/governance.py)
AWAITING_APPROVAL = "awaiting-approval"
#: the audit events that end each stage, in order: (stage name, event names that end it)
STAGES: tuple[tuple[str, frozenset[str]], ...] = (
    ("queued", frozenset({"claimed", "reclaimed"})),
    ("realign", frozenset({"realigned"})),
    ("gates", frozenset({"gated"})),
    ("register", frozenset({"promoted", "registered", "rejected", AWAITING_APPROVAL})),
)
ROLES = ("aligned", "finetuned", "realigned")


@dataclass(frozen=True)
class JobRow:
    """One line of the jobs list."""

    job: Job
    timings: Mapping[str, float | None]
    registered_by: str | None


@dataclass(frozen=True)
class RuleRow:
    """One gate rule: measured value, threshold, pass/fail and the margin (positive: slack)."""

    rule: str
    metric: str
    value: float
    threshold: float
    passed: bool
    margin: float
    message: str


@dataclass(frozen=True)
class Cell:
    """One role's value of a metric, with its 95 % Wilson interval when it is a rate on a known count."""

    value: float
    interval: Interval | None = None

    @property
    def n(self) -> int:
        """The items the interval stands on (0: not a rate, or the count is unknown)."""
        return self.interval.n if self.interval is not None else 0


@dataclass(frozen=True)
class MetricRow:
    """One metric across the roles (aligned reference, fine-tuned input, realigned output)."""

    metric: str
    task: str | None
    cells: Mapping[str, Cell | None] = field(default_factory=dict)


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return max(0.0, (end - start).total_seconds())


def stage_timings(events: Sequence[AuditEvent]) -> dict[str, float | None]:
    """Seconds spent in each stage (queued, realign, gates, register), from the audit trail of one job.

    A stage runs from the end of the previous one (the ``enqueued`` event for the first) to the first
    event that ends it; a stage not reached yet is None.
    """
    start = next((e.at for e in events if e.event == "enqueued"), None)
    out: dict[str, float | None] = {}
    for stage, enders in STAGES:
        end = next((e.at for e in events if e.event in enders), None)
        out[stage] = _seconds(start, end)
        start = end
    return out


def registered_by(events: Iterable[AuditEvent]) -> str | None:
    """The actor of the ``enqueued`` event: who (or which trigger) registered the version."""
    return next((e.actor for e in events if e.event == "enqueued"), None)


def final_decision(events: Sequence[AuditEvent], state: str) -> AuditEvent | None:
    """The audit event that put the job in its current ``state`` (who decided, when, why), if any."""
    return next((e for e in reversed(events) if e.decision == state), None)


def margin(reason: Mapping[str, Any]) -> float:
    """How far a rule's value is inside (positive) or outside (negative) its threshold."""
    value, threshold = float(reason["value"]), float(reason["threshold"])
    op = str(reason.get("rule", "")).split()[1] if len(str(reason.get("rule", "")).split()) > 1 else "<="
    return threshold - value if op.startswith("<") else value - threshold


def rule_rows(verdict: Mapping[str, Any] | None) -> list[RuleRow]:
    """Every rule of a verdict, failing ones first (config order within each group)."""
    reasons = list((verdict or {}).get("reasons") or [])
    rows = [
        RuleRow(
            rule=str(r.get("rule")),
            metric=str(r.get("metric")),
            value=float(r["value"]),
            threshold=float(r["threshold"]),
            passed=bool(r.get("passed")),
            margin=margin(r),
            message=str(r.get("message", "")),
        )  # fmt: skip
        for r in reasons
    ]
    return sorted(rows, key=lambda row: row.passed)


def _cell(value: Any, n: int) -> Cell | None:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return None
    rate = float(value)
    if n <= 0 or math.isnan(rate) or not 0.0 <= rate <= 1.0:
        return Cell(rate)
    return Cell(rate, interval_of_rate(rate, n))


def metric_rows(
    metrics: Mapping[str, Mapping[str, Any]] | None, samples: Mapping[str, Mapping[str, Any]] | None
) -> list[MetricRow]:
    """The gate metrics of each role beside each other, with item counts and 95 % intervals.

    ``samples`` is the ``metric_samples`` map of the realigned gate run's metrics.json; the baselines
    ran the same tasks with the same limits, so the same counts apply to them.
    """
    metrics = metrics or {}
    samples = samples or {}
    names = sorted({k for role in ROLES for k in (metrics.get(role) or {})})
    rows = []
    for name in names:
        size = samples.get(name) or {}
        n = int(size.get("effective") or 0)
        cells = {role: _cell((metrics.get(role) or {}).get(name), n) for role in ROLES}
        rows.append(MetricRow(name, size.get("task"), cells))
    return rows


def calibration_attempts(report: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """The calibration attempts of a realignment report, each with its quick/full violation score."""
    section = (report or {}).get("calibration")
    if not isinstance(section, Mapping):
        return []
    rows = []
    for a in section.get("attempts") or []:
        rows.append(
            {
                "attempt": a.get("attempt"),
                "rung": a.get("rung"),
                "options": a.get("options") or {},
                "relative_change": (a.get("strength") or {}).get("relative_change"),
                "quick": (a.get("quick") or {}).get("score"),
                "full": (a.get("full") or {}).get("score"),
                "passed": bool(a.get("passed")),
                "chosen": a.get("attempt") == section.get("chosen"),
                "seconds": a.get("seconds"),
            }
        )
    return rows


def fix_hints(rules: Sequence[RuleRow], report: Mapping[str, Any] | None) -> list[str]:
    """Plain sentences on what would make a rejected version pass, from the failing rules."""
    hints = []
    for r in rules:
        if r.passed:
            continue
        direction = "lower" if r.rule.split()[1:2] and r.rule.split()[1].startswith("<") else "higher"
        hints.append(
            f"{r.metric} must be {direction} by at least {abs(r.margin):.4f} "
            f"(measured {r.value:.4f}, rule {r.rule}, threshold {r.threshold:.4f})."
        )
    section = (report or {}).get("calibration")
    if isinstance(section, Mapping):
        if section.get("rejection"):
            hints.append(f"Calibration: {section['rejection']}")
        if section.get("stop_reason"):
            hints.append(f"Calibration stopped: {section['stop_reason']}")
    return hints


def page_of(items: Sequence[Any], page: int, per_page: int) -> tuple[list[Any], int]:
    """Slice ``items`` to 1-based ``page``; return the slice and the number of pages (at least 1)."""
    pages = max(1, math.ceil(len(items) / per_page))
    page = min(max(page, 1), pages)
    return list(items[(page - 1) * per_page : page * per_page]), pages
