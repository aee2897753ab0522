"""``mlflow nlsr realign --calibrate``: the ladder search of calibration/run.py, for a terminal."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from mlflow_nlsr.cli._common import echo_json
from mlflow_nlsr.options import RealignOptions


def run_calibration(
    base: Path,
    aligned: Path,
    finetuned: Path,
    output: Path,
    options: RealignOptions,
    *,
    gate_config: Path | None,
    gate_limit: int | None,
    quick_limit: int | None,
    max_attempts: int,
    time_budget: float | None,
    overwrite: bool,
    screen_z: float = 1.0,
    as_json: bool,
) -> None:
    """Calibrate, write the chosen realignment to `output`; exit 1 (output kept) when nothing passed."""
    from mlflow_nlsr.calibration.run import CalibrationSettings, Models, calibrate_realign
    from mlflow_nlsr.calibration.search import Attempt, Budget
    from mlflow_nlsr.gates.policy import load_gate_config

    def show(attempt: Attempt) -> None:
        click.echo(f"calibration {attempt.summary()} [{attempt.seconds:.0f}s]", err=True)

    settings = CalibrationSettings(
        load_gate_config(gate_config).placed(options.device, options.dtype),
        gate_limit=gate_limit,
        quick_limit=quick_limit,
        budget=Budget(max_attempts=max_attempts, time_budget_s=time_budget, screen_z=screen_z),
    )
    result, calibration = calibrate_realign(
        Models(Path(base), Path(aligned), Path(finetuned), Path(output)),
        options,
        settings,
        overwrite=overwrite,
        on_attempt=None if as_json else show,
    )
    if as_json:
        echo_json(result.report)
    else:
        chosen = calibration.chosen
        verdict = "passed its gates" if calibration.passed else "closest to passing"
        click.echo(
            f"calibration: attempt {chosen.number} of {len(calibration.attempts)} ({chosen.rung.name}, "
            f"options {dict(chosen.options)}) {verdict}; stopped by {calibration.stop_reason}"
        )
        click.echo(
            f"Realigned model written to {result.output} (report: {result.output / 'nlsr_report.json'})"
        )
    if not calibration.passed:
        click.echo(f"Rejected: {calibration.rejection}", err=True)
        sys.exit(1)
