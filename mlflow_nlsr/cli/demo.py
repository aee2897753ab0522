"""``mlflow nlsr demo``: the whole story on SmolLM2-135M-Instruct, offline, on CPU (docs/demo.md)."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from mlflow_nlsr.cli._common import F, echo_json, handle_errors, json_option, limit_threads, placement_options

OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def _dir_option(flag: str, default: str, help_text: str) -> Callable[[F], F]:
    """A directory option with a shown default, converted to a ``Path``."""
    path = click.Path(file_okay=False, path_type=Path)
    return click.option(flag, default=default, show_default=True, type=path, help=help_text)


@click.command("demo")
@_dir_option(
    "--work-dir",
    ".nlsr-demo",
    "Cache of every stage (models, registry, realigned outputs, gate results); --fast uses WORK/fast.",
)
@_dir_option("--output", "demo-output", "Where summary.json, report.md and the plots are written.")
@click.option("--fresh", is_flag=True, help="Start over: rebuild every stage instead of reusing the cache.")
@click.option("--fast", is_flag=True, help="CI size: fewer training pairs and gate items.")
@click.option(
    "--gate-limit",
    type=int,
    default=None,
    help="Gate items per generative task (harmful, over-refusal) [default: every item, --fast: 16].",
)
@click.option(
    "--keep-server",
    is_flag=True,
    help="Leave the local mlflow server running at the end (its URL and pid are printed).",
)
@click.option(
    "--calibrate",
    is_flag=True,
    help="Let the job search the calibration ladder until the gates pass (default: one realignment "
    "with the product defaults).",
)
@click.option(
    "--parallel/--sequential",
    default=True,
    show_default=True,
    help="Run the comparison rows (official, SafeLoRA, random control, base) in a second process while "
    "the registry job runs; one torch thread each. Needs >= 2 cores, else sequential anyway.",
)
@click.option("--quiet", is_flag=True, help="No progress bars (stage lines are still printed on stderr).")
@placement_options
@json_option
@handle_errors
def demo(work_dir: Path, quiet: bool, as_json: bool, **options: Any) -> None:
    """Align, attack, register, realign (registry trigger), gate and promote SmolLM2-135M; print the table."""
    # the other flags are named as the DemoConfig fields they set
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)
    limit_threads()
    from mlflow_nlsr.demo.orchestrate import DemoConfig, run_demo
    from mlflow_nlsr.demo.report import format_table

    config = DemoConfig(work=work_dir, progress=not quiet, **options)
    # libraries (MLflow's "View run" lines) print to stdout; keep stdout for the result alone
    with contextlib.redirect_stdout(sys.stderr):
        summary = run_demo(config, echo=lambda line: click.echo(line, err=True))
    if as_json:
        echo_json(summary)
        return
    promoted = summary["promoted"]
    click.echo("")
    click.echo(format_table(summary))
    click.echo("")
    decision = "promoted to" if promoted["promoted"] else "rejected:"
    click.echo(f"Registry job: {promoted['source_uri']} -> version {promoted['version']} {decision} "
               f"{promoted['model_uri']} (gates {promoted['verdict']})")  # fmt: skip
    for reason in promoted["reasons"]:
        click.echo(f"  {reason}")
    missed = [name for name, t in summary["targets"].items() if not t["met"]]
    click.echo(f"Targets met: {len(summary['targets']) - len(missed)}/{len(summary['targets'])}"
               + (f" (not met: {', '.join(missed)})" if missed else ""))  # fmt: skip
    click.echo(f"Seconds: {summary['seconds']['total']:.0f} total; report: {summary['files']['report']}")
    if config.keep_server:
        pid = summary["server"]["pid"]
        click.echo(f"mlflow server still running at {summary['tracking_uri']} (pid {pid})")
