"""Calibration wired to the pipeline and the gates: ``calibrate_realign`` (CLI) and ``calibrate_job`` (job).

Attempts live in a work dir (``attempt-NN/model``, ``attempt-NN/gates-quick``, ``attempt-NN/gates-full``)
keyed by the inputs, options and gate settings, so a resumed job reuses the attempts it already made.
The chosen attempt's model dir is moved to the output with the ``calibration`` section added to its
nlsr_report.json; the other attempts' model dirs are deleted (their gate outputs are kept).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlflow_nlsr.calibration.ladder import Rung, build_ladder
from mlflow_nlsr.calibration.screen import SampleSizes, quick_gate_sizes
from mlflow_nlsr.calibration.search import Attempt, Budget, CalibrationResult, GateFn, RealignFn, search
from mlflow_nlsr.errors import OutputExistsError
from mlflow_nlsr.gates.policy import GateConfig, load_gate_config
from mlflow_nlsr.options import RealignOptions
from mlflow_nlsr.pipeline.report import REPORT_NAME
from mlflow_nlsr.pipeline.result import RealignResult

if TYPE_CHECKING:
    from mlflow_nlsr.service.orchestrator import NLSRService

QUICK_LIMIT = 24
KEY_FILE = "calibration_key.json"


@dataclass(frozen=True)
class GateSetup:
    """How the quick and full gates run: the config's suites, tasks and judge, and one item limit each."""

    config: GateConfig
    quick_limit: int | None
    full_limit: int | None
    batch_size: int = 8

    @property
    def confirm(self) -> bool:
        """A quick pass needs a full-gate confirmation unless both gates are the same run."""
        return self.quick_limit != self.full_limit

    def kwargs(self, quick: bool, suites: tuple[str, ...] | None = None) -> dict[str, Any]:
        """``run_gates`` keyword arguments of one gate kind (the same keys the job's gate step uses).

        `suites` narrows the run (the base model: only what the rules read from it).
        """
        return self.config.run_kwargs(self.quick_limit if quick else self.full_limit, suites)  # None: all

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
    config: GateConfig, gate_limit: int | None, quick_limit: int | None = QUICK_LIMIT, batch_size: int = 8
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
    from mlflow_nlsr.pipeline import realign
    from mlflow_nlsr.pipeline.lora import ProjectionCache

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
        from mlflow_nlsr.gates.runner import run_gates

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


def references_of(config: GateConfig, base: Path, aligned: Path, finetuned: Path) -> dict[str, Path]:
    """The reference models the rules compare with: finetuned and aligned, and base when a rule names it."""
    refs = {"finetuned": Path(finetuned), "aligned": Path(aligned)}
    return {**refs, "base": Path(base)} if "base" in config.baselines else refs


def _short(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def prepare_work_dir(work_dir: Path, key: Mapping[str, Any], *, fresh: bool) -> None:
    """Create `work_dir`; wipe it when `fresh` or when it was made for another key (inputs, options)."""
    key_file = work_dir / KEY_FILE
    blob = json.dumps(key, sort_keys=True, default=str)
    if work_dir.exists() and (fresh or not key_file.is_file() or key_file.read_text() != blob):
        shutil.rmtree(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    key_file.write_text(blob)


def install(result: CalibrationResult, output: Path, *, overwrite: bool) -> dict[str, Any]:
    """Move the chosen attempt's model dir to `output` with the calibration section; return its report."""
    src = result.chosen.output
    report = dict(json.loads((src / REPORT_NAME).read_text()))
    data = report.get("calibration")  # ActSVD's calibration-data provenance (source, sha256 …) is kept
    report["calibration"] = {**(data if isinstance(data, dict) else {}), **result.section()}
    (src / REPORT_NAME).write_text(json.dumps(report, indent=2) + "\n")
    output = Path(output)
    if output.exists():
        if not overwrite and (output.is_file() or any(output.iterdir())):
            raise OutputExistsError(
                f"output {output} already exists; choose another path or pass --overwrite"
            )
        shutil.rmtree(output) if output.is_dir() else output.unlink()
    output.parent.mkdir(parents=True, exist_ok=True)
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
    base: Path,
    aligned: Path,
    finetuned: Path,
    output: Path,
    options: RealignOptions,
    *,
    gate_config: GateConfig | str | Path | None = None,
    gate_limit: int | None = None,
    quick_limit: int | None = QUICK_LIMIT,
    budget: Budget | None = None,
    ladder: tuple[Rung, ...] | None = None,
    work_dir: Path | None = None,
    overwrite: bool = False,
    progress: bool = False,
    batch_size: int = 8,
    on_attempt: Callable[[Attempt], None] | None = None,
) -> tuple[RealignResult, CalibrationResult]:
    """Realign with the least invasive rung that passes the gates (``mlflow nlsr realign --calibrate``).

    Attempts go to `work_dir` (default ``<output>.calibration``, started fresh); the chosen one (the first
    pass, else the closest to passing) is written to `output`, whose report holds every attempt.
    """
    from mlflow_nlsr.io import check_output_free

    output = Path(output)
    check_output_free(output, overwrite)
    config = gate_config if isinstance(gate_config, GateConfig) else load_gate_config(gate_config)
    setup = gate_setup(config, gate_limit, quick_limit, batch_size)
    rungs = ladder if ladder is not None else build_ladder(options)
    work = Path(work_dir) if work_dir is not None else output.with_name(output.name + ".calibration")
    prepare_work_dir(work, {"options": options.sha256()}, fresh=True)
    result = search(
        options,
        rungs,
        realign_fn=realign_step(Path(base), Path(aligned), Path(finetuned), progress=progress),
        gate_fn=gate_step(Path(base), setup, work),
        references=references_of(config, Path(base), Path(aligned), Path(finetuned)),
        config=config,
        work_dir=work,
        budget=budget,
        confirm=setup.confirm,
        on_attempt=on_attempt,
        quick_gate=setup.describe(),
        sample_sizes=setup.sample_sizes,
    )
    report = install(result, output, overwrite=overwrite)
    return RealignResult(output=output.absolute(), report=report), result


def calibrate_job(
    svc: NLSRService,
    job: Any,
    rule: Any,
    base: Path,
    aligned: Path,
    finetuned: Path,
    out: Path,
    options: RealignOptions,
    check_lease: Callable[[], None] | None = None,
) -> CalibrationResult:
    """The job's realign step with calibration: search, install into `out`, audit every attempt."""
    settings = svc.settings
    config = load_gate_config(rule.gate_config)
    limit = settings.gate_limit or rule.gate_limit
    setup = gate_setup(config, limit, settings.calibration_quick_limit, settings.gate_batch_size)
    job_dir = out.parent
    work = job_dir / "calibration"
    budget = Budget(
        settings.calibration_max_attempts,
        settings.calibration_time_budget_s,
        screen_z=settings.calibration_screen_z,
    )
    rungs = build_ladder(options)
    key = {
        "options": options.sha256(),
        "gate": setup.describe(),
        "budget": budget.to_dict(),
        "ladder": [r.name for r in rungs],
    }
    prepare_work_dir(work, key, fresh=False)
    references = references_of(config, base, aligned, finetuned)
    roles = {path.resolve(): role for role, path in references.items()}

    def reference_gate(path: Path, limit: int | None) -> Mapping[str, float]:
        return svc._gate(roles.get(path, "reference"), path, base, config, limit, job_dir)

    def audit(attempt: Attempt) -> None:
        svc.store.audit(
            "calibration_attempt",
            actor=settings.worker_id,
            model_name=job.model_name,
            version=job.version,
            job_id=job.id,
            inputs=attempt.to_dict(),
            decision="passed" if attempt.passed else "failed",
            reasons=[attempt.summary()],
        )
        if check_lease is not None:
            check_lease()

    result = search(
        options,
        rungs,
        realign_fn=realign_step(base, aligned, finetuned),
        gate_fn=gate_step(base, setup, work, reference_gate),
        references=references,
        config=config,
        work_dir=work,
        budget=budget,
        confirm=setup.confirm,
        on_attempt=audit,
        quick_gate=setup.describe(),
        sample_sizes=setup.sample_sizes,
    )
    install(result, out, overwrite=True)
    gates = chosen_full_gate_dir(result, setup)
    target = job_dir / "gates" / "realigned"  # the job's gate step reuses a full run found here
    if target.exists():
        shutil.rmtree(target)
    if gates is not None:
        shutil.copytree(gates, target)
    svc.store.audit(
        "calibrated",
        actor=settings.worker_id,
        model_name=job.model_name,
        version=job.version,
        job_id=job.id,
        inputs={
            "chosen": result.chosen.number,
            "rung": result.chosen.rung.name,
            "options": dict(result.chosen.options),
            "attempts": len(result.attempts),
        },
        decision="passed" if result.passed else "no-pass",
        reasons=[result.rejection or f"chosen {result.chosen.summary()}"],
    )
    return result


def calibration_reasons(report: Mapping[str, Any]) -> list[str]:
    """The calibration rejection of a report (empty when there was no calibration or it passed)."""
    section = report.get("calibration")
    if isinstance(section, Mapping) and section.get("rejection"):
        return [str(section["rejection"])]
    return []
