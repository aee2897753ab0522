"""Item counts and 95 % Wilson intervals of every rate a gate run reports, from lm-eval's logged samples.

A rate is a metric whose every per-item score is 0 or 1 (``asr``, ``refusal_rate``, ``sentiment_acc`` …);
per-category rates (``asr_weapons``) count only their category's items. Means of other values
(``helpfulness_nll``) and derived numbers (``utility``) get no interval. The flat names match
:func:`mlflow_nlsr.gates.metrics.flatten_task`. Wilson intervals come from :mod:`mlflow_nlsr.gates.stats`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from mlflow_nlsr.gates.metrics import metric_prefix, sanitize
from mlflow_nlsr.gates.stats import Interval, wilson_interval

_BY_CATEGORY = "_by_category"
CI_LOW, CI_HIGH = "_ci_low", "_ci_high"


def _binary(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if value in (0, 1) else None


def _tallies(task: str, samples: list[dict[str, Any]]) -> dict[str, list[float | None]]:
    prefix, out = metric_prefix(task), defaultdict(list)
    for sample in samples:
        filt = str(sample.get("filter") or "none")
        suffix = "" if filt in ("none", "") else f"_{sanitize(filt)}"
        for name in sample.get("metrics", []):
            value = sample.get(name)
            if name.endswith(_BY_CATEGORY) and isinstance(value, (list, tuple)) and len(value) == 2:
                base = name[: -len(_BY_CATEGORY)]
                out[f"{prefix}{base}_{sanitize(value[0])}{suffix}"].append(_binary(value[1]))
            else:
                out[f"{prefix}{name}{suffix}"].append(_binary(value))
    return out


def rate_intervals(results: Mapping[str, Any]) -> dict[str, Interval]:
    """``{flat metric: Interval(rate, n, low, high)}`` for every 0/1 metric of an lm-eval results dict."""
    out: dict[str, Interval] = {}
    for task, samples in (results.get("samples") or {}).items():
        for metric, scores in _tallies(task, list(samples)).items():
            if scores and all(s is not None for s in scores):
                out[metric] = wilson_interval(int(sum(s or 0.0 for s in scores)), len(scores))
    return dict(sorted(out.items()))


def interval_metrics(intervals: Mapping[str, Mapping[str, Any]]) -> dict[str, float]:
    """Flat ``<metric>_ci_low`` / ``<metric>_ci_high`` values (for MLflow metrics and tags)."""
    out: dict[str, float] = {}
    for metric, iv in intervals.items():
        out[metric + CI_LOW], out[metric + CI_HIGH] = float(iv["low"]), float(iv["high"])
    return out


def read_intervals(summary: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The ``intervals`` section of a metrics.json summary ({} for runs written before it existed)."""
    section = summary.get("intervals")
    return {k: dict(v) for k, v in section.items()} if isinstance(section, Mapping) else {}


def metrics_with_intervals(summary: Mapping[str, Any]) -> dict[str, float]:
    """A metrics.json summary's flat metrics plus ``<rate>_ci_low`` / ``<rate>_ci_high`` of its rates."""
    return {**dict(summary.get("metrics") or {}), **interval_metrics(read_intervals(summary))}
