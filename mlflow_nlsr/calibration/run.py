"""A calibration run: wire the search to the pipeline and the gates, and install the chosen attempt.

``calibrate_realign`` serves ``mlflow nlsr realign --calibrate``; ``calibrate_job`` serves a registry
job. The job's calibration receives what it needs from the orchestrator (:class:`JobHooks`: the
reference gate with the job's content-hash cache, the audit trail, the lease heartbeat) and never
imports the service. Attempts live in a work dir (``attempt-NN/model``, ``attempt-NN/gates-quick``,
``attempt-NN/gates-full``) keyed by the inputs, options and gate settings, so a resumed job reuses the
attempts it already made. The chosen attempt's model dir is moved to the output with the
``calibration_search`` section added to its nlsr_report.json; the other attempts' model dirs are
deleted (their gate outputs are kept).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlflow_nlsr.calibration.attempts import Attempt, Budget, CalibrationResult
from mlflow_nlsr.calibration.ladder import Rung, build_ladder
from mlflow_nlsr.calibration.search import search
from mlflow_nlsr.calibration.steps import (
    QUICK_LIMIT,
    GateSetup,
    gate_setup,
    gate_step,
    realign_step,
    references_of,
)
from mlflow_nlsr.errors import OutputExistsError
from mlflow_nlsr.gates.policy import GateConfig
from mlflow_nlsr.io import check_output_free
from mlflow_nlsr.options import RealignOptions
from mlflow_nlsr.pipeline.report import REPORT_NAME
from mlflow_nlsr.pipeline.result import RealignResult
from mlflow_nlsr.report_sections import CALIBRATION_SEARCH

KEY_FILE = "calibration_key.json"


@dataclass(frozen=True)
class CalibrationSettings:
    """The gates and bounds of one calibration (from CLI flags, or from the service's Settings)."""

    gate_config: GateConfig
    #: items per task of the full gate (None: the config's limit, else every item)
    gate_limit: int | None = None
    #: items per task of the quick gate (capped by the full gate's)
    quick_limit: int | None = QUICK_LIMIT
    batch_size: int | str = 8
    budget: Budget = field(default_factory=Budget)

    def gate_setup(self) -> GateSetup:
        """How the quick and the full gate run (see :func:`~mlflow_nlsr.calibration.steps.gate_setup`)."""
        return gate_setup(self.gate_config, self.gate_limit, self.quick_limit, self.batch_size)


@dataclass(frozen=True)
class Models:
    """The three inputs of a realignment and where the chosen output goes."""

    base: Path
    aligned: Path
    finetuned: Path
    output: Path

    @property
    def references(self) -> dict[str, Path]:
        """The baselines the gates compare with, by role."""
        return {"finetuned": self.finetuned, "aligned": self.aligned}


@dataclass(frozen=True)
class JobHooks:
    """What the orchestrator hands a job's calibration; calibration never reaches into the service.

    Attributes:
        realign: ``(options, out_dir) -> report``; resumable (an attempt dir with a report is reused).
        reference_gate: ``(role, model_dir, item_limit) -> metrics`` of a reference model (the job's
            content-hash gate cache); attempts are gated inside the work dir.
        audit: ``(event, inputs, decision, reasons)`` appended to the job's audit trail.
        heartbeat: raises when the job's lease was lost (called after every attempt).

    """

    realign: Callable[[RealignOptions, Path], Mapping[str, Any]]
    reference_gate: Callable[[str, Path, int | None], Mapping[str, float]]
    audit: Callable[[str, dict[str, Any], str, list[str]], None]
    heartbeat: Callable[[], None] = lambda: None


def prepare_work_dir(work_dir: Path, key: Mapping[str, Any], *, fresh: bool) -> None:
    """Create `work_dir`; wipe it when `fresh` or when it was made for another key (inputs, options)."""
    key_file = work_dir / KEY_FILE
    blob = json.dumps(key, sort_keys=True, default=str)
    if work_dir.exists() and (fresh or not key_file.is_file() or key_file.read_text() != blob):
        shutil.rmtree(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    key_file.write_text(blob)


def _replace_output(output: Path, *, overwrite: bool) -> None:
    if output.exists():
        if not overwrite and (output.is_file() or any(output.iterdir())):
            raise OutputExistsError(
                f"output {output} already exists; choose another path or pass --overwrite"
            )
        shutil.rmtree(output) if output.is_dir() else output.unlink()
    output.parent.mkdir(parents=True, exist_ok=True)


def install(result: CalibrationResult, output: Path, *, overwrite: bool) -> dict[str, Any]:
    """Move the chosen attempt's model dir to `output` with the search section; return its report.

    The attempt's own ``actsvd_data`` section (ActSVD's calibration-data provenance) is kept beside it.
    """
    src = result.chosen.output
    report = dict(json.loads((src / REPORT_NAME).read_text()))
    report[CALIBRATION_SEARCH] = result.section()
    (src / REPORT_NAME).write_text(json.dumps(report, indent=2) + "\n")
    output = Path(output)
    _replace_output(output, overwrite=overwrite)
    shutil.move(str(src), str(output))
    for attempt in result.attempts:
        if attempt is not result.chosen and attempt.output.exists():
            shutil.rmtree(attempt.output)
    return report


def chosen_full_gate_dir(result: CalibrationResult, setup: GateSetup) -> Path | None:
    """The chosen attempt's gate output that equals a full gate run, if one was made."""
    kind = "full" if setup.confirm else "quick"
    path = result.chosen.output.parent / f"gates-{kind}"
    return path if (path / "metrics.json").is_file() else None


def calibrate_realign(
    models: Models,
    options: RealignOptions,
    settings: CalibrationSettings,
    *,
    ladder: tuple[Rung, ...] | None = None,
    work_dir: Path | None = None,
    overwrite: bool = False,
    progress: bool = False,
    on_attempt: Callable[[Attempt], None] | None = None,
) -> tuple[RealignResult, CalibrationResult]:
    """Realign with the least invasive rung that passes the gates (``mlflow nlsr realign --calibrate``).

    Attempts go to `work_dir` (default ``<output>.calibration``, started fresh); the chosen one (the first
    pass, else the closest to passing) is written to ``models.output``, whose report holds every attempt.
    """
    output = Path(models.output)
    check_output_free(output, overwrite)
    setup = settings.gate_setup()
    work = Path(work_dir) if work_dir is not None else output.with_name(output.name + ".calibration")
    prepare_work_dir(work, {"options": options.sha256()}, fresh=True)
    result = search(
        options,
        ladder if ladder is not None else build_ladder(options),
        realign_fn=realign_step(models.base, models.aligned, models.finetuned, progress=progress),
        gate_fn=gate_step(models.base, setup, work),
        references=references_of(setup.config, models.base, models.aligned, models.finetuned),
        on_attempt=on_attempt,
        **_search_settings(setup, settings.budget, work),
    )
    report = install(result, output, overwrite=overwrite)
    return RealignResult(output=output.absolute(), report=report), result


def _search_settings(setup: GateSetup, budget: Budget, work: Path) -> dict[str, Any]:
    return {
        "config": setup.config,
        "work_dir": work,
        "budget": budget,
        "confirm": setup.confirm,
        "quick_gate": setup.describe(),
        "sample_sizes": setup.sample_sizes,
    }


def calibrate_job(
    models: Models, options: RealignOptions, settings: CalibrationSettings, hooks: JobHooks
) -> CalibrationResult:
    """A job's realign step with calibration: search, install into ``models.output``, audit each attempt.

    The work dir (``<output>/../calibration``) is keyed by the options, gates, budget and ladder, so a
    resumed job reuses its attempts; the chosen attempt's full gate run is copied to ``gates/realigned``
    for the job's gate step to reuse.
    """
    setup = settings.gate_setup()
    job_dir = models.output.parent
    work = job_dir / "calibration"
    rungs = build_ladder(options)
    key = {"options": options.sha256(), "gate": setup.describe(), "budget": settings.budget.to_dict(),
           "ladder": [r.name for r in rungs]}  # fmt: skip
    prepare_work_dir(work, key, fresh=False)
    refs = references_of(setup.config, models.base, models.aligned, models.finetuned)
    roles = {Path(p).resolve(): role for role, p in refs.items()}

    def reference_gate(path: Path, limit: int | None) -> Mapping[str, float]:
        return hooks.reference_gate(roles.get(path, "reference"), path, limit)

    def audit(attempt: Attempt) -> None:
        decision = "passed" if attempt.passed else "failed"
        hooks.audit("calibration_attempt", attempt.to_dict(), decision, [attempt.summary()])
        hooks.heartbeat()

    result = search(
        options,
        rungs,
        realign_fn=hooks.realign,
        gate_fn=gate_step(models.base, setup, work, reference_gate),
        references=references_of(setup.config, models.base, models.aligned, models.finetuned),
        on_attempt=audit,
        **_search_settings(setup, settings.budget, work),
    )
    install(result, models.output, overwrite=True)
    _keep_chosen_gate(result, setup, job_dir / "gates" / "realigned")
    hooks.audit("calibrated", _chosen(result), "passed" if result.passed else "no-pass",
                [result.rejection or f"chosen {result.chosen.summary()}"])  # fmt: skip
    return result


def _keep_chosen_gate(result: CalibrationResult, setup: GateSetup, target: Path) -> None:
    """Copy the chosen attempt's full gate run to `target` (the job's gate step reuses a run found there)."""
    gates = chosen_full_gate_dir(result, setup)
    if target.exists():
        shutil.rmtree(target)
    if gates is not None:
        shutil.copytree(gates, target)


def _chosen(result: CalibrationResult) -> dict[str, Any]:
    return {
        "chosen": result.chosen.number,
        "rung": result.chosen.rung.name,
        "options": dict(result.chosen.options),
        "attempts": len(result.attempts),
    }
