"""What each stage of a job cost: seconds, peak process RSS and (on CUDA) peak GPU memory allocated.

``StageCosts`` appends one record per stage to ``costs.json`` in the job dir as each stage ends (a resumed
job keeps the stages it already ran); ``record_costs`` writes them, with the device and dtype that ran,
into the realigned model's ``nlsr_report.json`` before it is registered, and ``cost_metrics`` turns
them into MLflow metrics of the job's run (``cost.<stage>.seconds`` …). The peak RSS is the process's
high-water mark at the end of the stage (``ru_maxrss``; it never goes down, so it bounds the stage);
the GPU peak is ``torch.cuda.max_memory_allocated`` reset at the stage's start.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mlflow_nlsr.options import RealignOptions

COSTS_FILE = "costs.json"
REPORT_NAME = "nlsr_report.json"


def peak_rss_mib() -> float:
    """The process's peak resident set size so far, in MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (2**20 if sys.platform == "darwin" else 2**10), 1)


def _cuda(device: str) -> Any:
    if not str(device).startswith(("cuda", "auto")):
        return None
    import torch

    return torch.cuda if torch.cuda.is_available() else None


class StageCosts:
    """Per-stage costs of one job, kept in `path` (JSON list) so that a resumed job adds to them."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def load(self) -> list[dict[str, Any]]:
        """The stages recorded so far (oldest first)."""
        if not self.path.is_file():
            return []
        data = json.loads(self.path.read_text())
        return list(data) if isinstance(data, list) else []

    @contextmanager
    def stage(self, name: str, device: str = "cpu") -> Iterator[None]:
        """Measure the ``with`` block as stage `name`; recorded only when the block completes.

        The first completed measurement of a stage stands: a resumed or repeated job that finds the
        stage's output already written (and so does not redo the work) records nothing new.
        """
        if any(s.get("stage") == name for s in self.load()):
            yield
            return
        cuda = _cuda(device)
        if cuda is not None:
            cuda.reset_peak_memory_stats()
        started = time.perf_counter()
        yield
        record: dict[str, Any] = {"stage": name, "seconds": round(time.perf_counter() - started, 3),
                                  "peak_rss_mib": peak_rss_mib()}
        if cuda is not None:
            record["cuda_max_allocated_mib"] = round(cuda.max_memory_allocated() / 2**20, 1)
        stages = [*self.load(), record]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(stages, indent=1) + "\n")


def record_costs(out: Path, costs: StageCosts, options: RealignOptions) -> dict[str, Any]:
    """Write the stages and the resolved device/dtype into ``out/nlsr_report.json``; return the report."""
    from mlflow_nlsr.placement import placement

    path = Path(out) / REPORT_NAME
    report = dict(json.loads(path.read_text()))
    device, dtype = placement(options.device, options.dtype)
    section = {"device": device, "dtype": dtype, "stages": costs.load()}
    if report.get("costs") != section:  # a resumed or repeated job that ran nothing new leaves it alone
        report["costs"] = section
        path.write_text(json.dumps(report, indent=2) + "\n")
    return report


def read_report(out: Path) -> dict[str, Any]:
    """The realigned model's ``nlsr_report.json`` in `out` (costs as recorded where the work ran)."""
    return dict(json.loads((Path(out) / REPORT_NAME).read_text()))


def cost_metrics(report: Mapping[str, Any]) -> dict[str, float]:
    """``cost.<stage>.<measure>`` metrics of the report's ``costs`` section."""
    section = report.get("costs")
    if not isinstance(section, Mapping):
        return {}
    metrics: dict[str, float] = {}
    for stage in section.get("stages", []):
        for key, value in stage.items():
            if key != "stage" and isinstance(value, (int, float)):
                metrics[f"cost.{stage['stage']}.{key}"] = float(value)
    return metrics


__all__ = ["COSTS_FILE", "StageCosts", "cost_metrics", "peak_rss_mib", "read_report", "record_costs"]
