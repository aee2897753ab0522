"""Pure transforms of an lm-eval results dict: flat gate metrics and one row per scored sample."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

from mlflow_nlsr.errors import GateError
from mlflow_nlsr.gates.catalog import SHIPPED_TASKS

_SKIP_KEYS = {"name", "alias", "sample_len", "sample_count", " "}
_BY_CATEGORY = "_by_category"


def sanitize(name: str) -> str:
    """Lower-case `name` and replace every run of non-alphanumerics with one underscore."""
    return re.sub(r"[^0-9a-z]+", "_", str(name).lower()).strip("_")


def metric_prefix(task: str) -> str:
    """Return the prefix of a task's flat metric names (``""`` for safety tasks, ``"<task>_"`` for extras)."""
    spec = SHIPPED_TASKS.get(task)
    return spec.prefix if spec is not None else f"{sanitize(task)}_"


def _as_float(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out


def flatten_task(task: str, entry: dict[str, Any]) -> dict[str, float]:
    """Flatten one ``results[task]`` entry (``"metric,filter"`` keys) to ``{flat name: value}``."""
    prefix, out = metric_prefix(task), {}
    for key, value in entry.items():
        if key in _SKIP_KEYS or "," not in key:
            continue
        metric, _, filt = key.partition(",")
        if metric.endswith("_stderr"):
            continue
        suffix = "" if filt in ("none", "") else f"_{sanitize(filt)}"
        if metric.endswith(_BY_CATEGORY) and isinstance(value, dict):
            base = metric[: -len(_BY_CATEGORY)]
            for category, rate in value.items():
                out[f"{prefix}{base}_{sanitize(category)}{suffix}"] = float(rate)
            continue
        number = _as_float(value)
        if number is not None:
            out[f"{prefix}{metric}{suffix}"] = number
    return out


def primary_metric(task: str, entry: dict[str, Any], config: dict[str, Any] | None) -> float:
    """Return the task's headline value: its first configured metric (first filter), else the first one."""
    keys = [k for k in entry if "," in k and "_stderr" not in k and _as_float(entry[k]) is not None]
    wanted = [m.get("metric") for m in (config or {}).get("metric_list") or [] if isinstance(m, dict)]
    for metric in wanted:
        for key in keys:
            if key.partition(",")[0] == metric:
                return float(entry[key])
    if not keys:
        raise GateError(f"task {task!r} produced no numeric metric (found keys {sorted(entry)})")
    return float(entry[keys[0]])


def flatten_results(results: dict[str, Any], utility_tasks: Sequence[str]) -> dict[str, float]:
    """Turn lm-eval's results dict into flat gate metrics, adding ``utility`` = mean of `utility_tasks`."""
    per_task = results.get("results") or {}
    metrics: dict[str, float] = {}
    for task, entry in per_task.items():
        metrics.update(flatten_task(task, entry))
    if utility_tasks:
        values = []
        for task in utility_tasks:
            if task not in per_task:
                raise GateError(f"utility task {task!r} is missing from the lm-eval results")
            values.append(primary_metric(task, per_task[task], (results.get("configs") or {}).get(task)))
        metrics["utility"] = math.fsum(values) / len(values)
    return metrics


def metric_samples(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Map each flat metric to its task and item counts: ``{"asr": {"task": …, "effective": 24, …}}``.

    ``effective`` is how many items were scored (after ``limit``), ``original`` how many the task has;
    a rate measured on a subset is an estimate (calibration's quick-gate screen needs both).
    """
    counts = results.get("n-samples") or {}
    out: dict[str, dict[str, Any]] = {}
    for task, entry in (results.get("results") or {}).items():
        n = counts.get(task) or {}
        if "effective" not in n:
            continue
        sizes = {
            "task": task,
            "effective": int(n["effective"]),
            "original": int(n.get("original", n["effective"])),
        }
        out.update({metric: dict(sizes) for metric in flatten_task(task, entry)})
    return out


def _response(sample: dict[str, Any], output_type: str) -> Any:
    filtered = sample.get("filtered_resps") or []
    if output_type == "multiple_choice":
        scores = [r[0] if isinstance(r, (list, tuple)) else r for r in filtered]
        choices = [a[1] if isinstance(a, (list, tuple)) and len(a) > 1 else a for a in sample["arguments"]]
        if not scores:
            return None
        best = max(range(len(scores)), key=lambda i: float(scores[i]))
        return str(choices[best]).strip()
    return filtered[0] if len(filtered) == 1 else filtered


def sample_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Return one JSON-ready row per logged sample: task, doc_id, id, prompt, response, target, scores."""
    rows = []
    configs = results.get("configs") or {}
    for task, samples in (results.get("samples") or {}).items():
        output_type = (configs.get(task) or {}).get("output_type", "generate_until")
        for sample in samples:
            args = sample.get("arguments") or [[""]]
            scores, category = {}, None
            for name in sample.get("metrics", []):
                value = sample.get(name)
                if isinstance(value, (list, tuple)) and len(value) == 2 and name.endswith(_BY_CATEGORY):
                    category = value[0]
                    continue
                scores[name] = _as_float(value) if _as_float(value) is not None else value
            doc = sample.get("doc") or {}
            rows.append(
                {
                    "task": task,
                    "doc_id": sample.get("doc_id"),
                    "id": doc.get("id"),
                    "category": category if category is not None else doc.get("category"),
                    "filter": sample.get("filter"),
                    "prompt": args[0][0] if isinstance(args[0], (list, tuple)) else args[0],
                    "response": _response(sample, output_type),
                    "target": sample.get("target"),
                    "scores": scores,
                }
            )
    return rows
