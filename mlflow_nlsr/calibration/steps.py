"""The search's two steps on real models: realign with the pipeline, gate with lm-eval (resumable).

:class:`GateSetup` says how the quick and the full gate run; :func:`realign_step` and :func:`gate_step`
build the ``realign_fn`` and ``gate_fn`` that search.py calls. Both reuse what an attempt dir already
holds, so a resumed calibration redoes nothing.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlflow_nlsr.calibration.screen import SampleSizes, quick_gate_sizes
from mlflow_nlsr.calibration.search import GateFn, RealignFn
from mlflow_nlsr.gates.policy import GateConfig
from mlflow_nlsr.gates.runner import run_gates
from mlflow_nlsr.options import RealignOptions
from mlflow_nlsr.pipeline import realign
from mlflow_nlsr.pipeline.projection_cache import ProjectionCache
from mlflow_nlsr.pipeline.report import REPORT_NAME

#: items per task of the quick gate
QUICK_LIMIT = 24


@dataclass(frozen=True)
class GateSetup:
    """How the quick and full gates run: the config's suites, tasks and judge, and one item limit each."""

    config: GateConfig
    quick_limit: int | None
    full_limit: int | None
    batch_size: int | str = 8

    @property
    def confirm(self) -> bool:
        """A quick pass needs a full-gate confirmation unless both gates are the same run."""
        return self.quick_limit != self.full_limit

    def kwargs(self, quick: bool, suites: tuple[str, ...] | None = None) -> dict[str, Any]:
        """``run_gates`` keyword arguments of one gate kind (the same keys the job's gate step uses)."""
        # `suites` narrows the run (the base model: only what the rules read from it)
        return self.config.run_kwargs(self.quick_limit if quick else self.full_limit, suites)

    def sample_sizes(self, model: Path) -> SampleSizes:
        """Per-metric (quick, full) item counts of an attempt, from its quick gate's metrics.json."""
        metrics = Path(model).parent / "gates-quick" / "metrics.json"
        return quick_gate_sizes(metrics, self.full_limit, self.config.task_limits)

    def describe(self) -> dict[str, Any]:
        """The report's ``quick_gate`` entry (without baselines)."""
        quick = self.kwargs(True)
        return {
            "limit": self.quick_limit,
            "full_limit": self.full_limit,
            "suites": list(quick["suites"]),
            "judge": quick["judge"],
            "confirm_with_full_gate": self.confirm,
        }


def gate_setup(
    config: GateConfig,
    gate_limit: int | None,
    quick_limit: int | None = QUICK_LIMIT,
    batch_size: int | str = 8,
) -> GateSetup:
    """Full limit = `gate_limit` or the config's (None = every item); quick = min(quick_limit, full)."""
    full = gate_limit or config.limit
    quick = full if quick_limit is None else (quick_limit if full is None else min(quick_limit, full))
    return GateSetup(config, quick, full, batch_size)


def realign_step(base: Path, aligned: Path, finetuned: Path, *, progress: bool = False) -> RealignFn:
    """``realign_fn`` on the pipeline; an attempt dir that already holds a report is reused (resume).

    Attempts share one ActSVD projection cache: rungs that differ only in the modules they patch
    reuse the calibration pass.
    """
    cache = ProjectionCache()

    def run(options: RealignOptions, out: Path) -> Mapping[str, Any]:
        report = out / REPORT_NAME
        if report.is_file():
            return dict(json.loads(report.read_text()))
        return realign(
            base, aligned, finetuned, out, options, progress=progress, overwrite=True, projection_cache=cache
        ).report

    return run


def gate_step(
    base: Path,
    setup: GateSetup,
    work_dir: Path,
    reference_gate: Callable[[Path, int | None], Mapping[str, float]] | None = None,
) -> GateFn:
    """``gate_fn`` on the gate runner; outputs go next to an attempt, or to ``work_dir/references``.

    `reference_gate(path, limit)` replaces the runner for a model outside `work_dir` (the job uses its
    content-hash cache). A gate dir that already holds metrics.json is reused.
    """
    root, base_dir = Path(work_dir).resolve(), Path(base).resolve()

    def run(target: Path, quick: bool) -> Mapping[str, float]:
        kind = "quick" if quick else "full"
        resolved = Path(target).resolve()
        is_base = resolved == base_dir
        kwargs = setup.kwargs(quick, setup.config.baseline_suites("base") if is_base else None)
        if root in resolved.parents:
            out = resolved.parent / f"gates-{kind}"
        elif reference_gate is not None:
            return reference_gate(resolved, kwargs["limit"])
        else:
            out = root / "references" / f"{_short(str(resolved))}-{kind}"
        metrics_file = out / "metrics.json"
        if metrics_file.is_file():
            return dict(json.loads(metrics_file.read_text())["metrics"])
        adapter = (resolved / "adapter_config.json").is_file()
        gate = run_gates(
            base if adapter else resolved,
            adapter=resolved if adapter else None,
            batch_size=setup.batch_size,
            output_dir=out,
            **kwargs,
        )
        return dict(gate.metrics)

    return run


def _short(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def references_of(config: GateConfig, base: Path, aligned: Path, finetuned: Path) -> dict[str, Path]:
    """The reference models the rules compare with: finetuned and aligned, and base when a rule names it."""
    refs = {"finetuned": Path(finetuned), "aligned": Path(aligned)}
    return {**refs, "base": Path(base)} if "base" in config.baselines else refs
