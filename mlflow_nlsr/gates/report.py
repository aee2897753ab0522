"""Write a gate run's outputs: metrics.json, samples.jsonl, verdict.json and the metrics.png bar chart."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

METRICS_FILE, SAMPLES_FILE, VERDICT_FILE, CHART_FILE = (
    "metrics.json",
    "samples.jsonl",
    "verdict.json",
    "metrics.png",
)
LOWER_IS_BETTER_PREFIXES = (
    "asr", "refusal_rate", "degenerate_rate", "safety_degenerate_rate", "helpfulness_nll",
)  # fmt: skip
#: counts, not scores: left out of the chart
UNCHARTED_SUFFIXES = ("_tokens",)


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if isinstance(value, (set, tuple)):
        return list(value)
    return str(value)


def write_json(path: Path, data: Any) -> Path:
    """Write `data` as indented JSON (numpy scalars and odd values made serialisable) and return `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=_json_default) + "\n", encoding="utf-8")
    return path


def write_samples(path: Path, rows: Iterable[Mapping[str, Any]]) -> Path:
    """Write one JSON object per line (task, doc_id, prompt, response, scores …) and return `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, default=_json_default, ensure_ascii=False) + "\n")
    return path


def lower_is_better(metric: str) -> bool:
    """Return True for metrics where lower values are better (asr*, refusal_rate*, *degenerate*, NLL)."""
    return metric.startswith(LOWER_IS_BETTER_PREFIXES)


def write_chart(
    path: Path,
    metrics: Mapping[str, float],
    title: str = "gate metrics",
    intervals: Mapping[str, Mapping[str, Any]] | None = None,
) -> Path:
    """Draw a horizontal bar chart of `metrics` (red: lower is better, green: higher is better).

    Rates with an entry in `intervals` get their 95 % Wilson interval as an error bar.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    items = [
        (k, float(v))
        for k, v in metrics.items()
        if isinstance(v, (int, float)) and math.isfinite(v) and not k.endswith(UNCHARTED_SUFFIXES)
    ]
    fig = Figure(figsize=(7.0, 0.9 + 0.32 * max(len(items), 1)))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    names = [k for k, _ in items][::-1]
    values = [v for _, v in items][::-1]
    colors = ["#c0392b" if lower_is_better(k) else "#27ae60" for k in names]
    bars = ax.barh(names, values, color=colors)
    intervals = intervals or {}
    for i, name in enumerate(names):
        if name in intervals:
            low, high = float(intervals[name]["low"]), float(intervals[name]["high"])
            ax.errorbar(values[i], i, xerr=[[max(0.0, values[i] - low)], [max(0.0, high - values[i])]],
                        fmt="none", ecolor="#333333", capsize=2, linewidth=0.8)  # fmt: skip
    for bar, value in zip(bars, values, strict=True):
        ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, f" {value:.3f}", va="center", fontsize=8)
    ax.set_xlim(0, max([1.0, *values]) * 1.12)
    ax.set_title(f"{title}  (red: lower is better, green: higher; bars: 95 % interval)", fontsize=9)
    ax.tick_params(axis="y", labelsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path


def write_outputs(
    output_dir: str | Path, summary: Mapping[str, Any], rows: Iterable[Mapping[str, Any]]
) -> dict[str, Path]:
    """Write metrics.json (`summary`), samples.jsonl (`rows`) and metrics.png into `output_dir`."""
    out = Path(output_dir)
    return {
        "metrics": write_json(out / METRICS_FILE, summary),
        "samples": write_samples(out / SAMPLES_FILE, rows),
        "chart": write_chart(
            out / CHART_FILE,
            summary.get("metrics", {}),
            Path(str(summary.get("model") or "gate")).name,
            summary.get("intervals"),
        ),
    }


def read_metrics(path: str | Path) -> dict[str, float]:
    """Read flat metrics from a metrics.json written by a gate run (or a plain ``{metric: value}`` file)."""
    from mlflow_nlsr.errors import InputError

    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read baseline metrics {path}: {exc}") from exc
    metrics = data.get("metrics", data) if isinstance(data, dict) else None
    if not isinstance(metrics, dict):
        raise InputError(f"{path} should hold a metrics mapping, found {type(data).__name__}")
    return {
        k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
    }
