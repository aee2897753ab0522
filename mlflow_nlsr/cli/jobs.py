"""``mlflow nlsr run | worker | status | audit``: the registry job, synchronously or by workers."""

from __future__ import annotations

import functools
import sys
from datetime import datetime, timezone
from typing import Any

import click

from mlflow_nlsr.cli._common import (
    batch_size_type,
    echo_json,
    handle_errors,
    json_option,
    key_value_option,
    limit_threads,
    placement_options,
)
from mlflow_nlsr.cli._service import build_service, parse_sets, with_service
from mlflow_nlsr.errors import ConfigError, VerificationFailed


def executor_options(func: Any) -> Any:
    """Add ``--executor NAME`` and ``--executor-option KEY=VALUE`` (repeatable)."""
    func = key_value_option(
        "--executor-option",
        "executor_option",
        "Executor option over the rule's, e.g. --executor-option num_gpus=1 (repeatable; YAML values).",
    )(func)
    return click.option(
        "--executor",
        default=None,
        help="Where realign + gates run: local (default) or an installed executor plugin such as ray "
        "(overrides the rule's executor:).",
    )(func)


def _executor_settings(name: str | None, options: tuple[str, ...]) -> dict[str, Any]:
    if name is not None:
        from mlflow_nlsr.service.executor import EXECUTORS

        EXECUTORS.check(name)
    return {"executor": name, "executor_options": parse_sets(options, "--executor-option")}


def job_options(func: Any) -> Any:
    """``--device/--dtype`` and ``--executor/--executor-option``, passed on as one ``job_args`` dict.

    The commands that run jobs (``run``, ``worker``) hand them to ``build_service`` unchanged.
    """

    @functools.wraps(func)
    def wrapper(
        *args: Any, device: str | None, dtype: str | None, executor: str | None,
        executor_option: tuple[str, ...], **kwargs: Any,
    ) -> Any:
        job_args = {"device": device, "dtype": dtype, **_executor_settings(executor, executor_option)}
        return func(*args, job_args=job_args, **kwargs)

    return placement_options(executor_options(wrapper))


def _parse_model_uri(uri: str) -> tuple[str, str]:
    prefix = "models:/"
    body = uri[len(prefix) :] if uri.startswith(prefix) else ""
    if "/" not in body or not body.rsplit("/", 1)[1].isdigit():
        raise ConfigError(f"--model-uri expects models:/NAME/VERSION (a registered version), got {uri!r}")
    name, version = body.rsplit("/", 1)
    return name, version


@click.command()
@click.option("--model-uri", required=True, help="The fine-tuned version: models:/NAME/VERSION.")
@click.option(
    "--base", "base_uri", default=None, help="Base model URI (overrides nlsr.yaml and version tags)."
)
@click.option("--aligned", "aligned_uri", default=None, help="Aligned adapter/model URI (overrides).")
@click.option("--gate-limit", type=int, default=None, help="Items per gate task (default: all).")
@click.option(
    "--gate-batch-size",
    type=batch_size_type,
    default="8",
    show_default=True,
    help="Gate generation batch size, or auto (the largest that fits on a GPU; 16 on the CPU).",
)
@click.option("--no-promote", is_flag=True, help="Register and gate, but never move the alias.")
@key_value_option(
    "--set", "sets", "Realign option override, e.g. --set scorer=magnitude --set sparsity=0.5 (repeatable)."
)
@click.option("--scorer", default=None, help="Shortcut for --set scorer=…")
@click.option("--selection", default=None, help="Shortcut for --set selection=…")
@click.option("--sparsity", type=float, default=None, help="Shortcut for --set sparsity=…")
@click.option(
    "--calibrate/--no-calibrate",
    default=True,
    show_default=True,
    help="Realign with the least invasive ladder rung that passes the gates (docs/calibration.md).",
)
@job_options
@with_service
@json_option
@handle_errors
def run(
    model_uri: str,
    base_uri: str | None,
    aligned_uri: str | None,
    gate_limit: int | None,
    gate_batch_size: int | str,
    no_promote: bool,
    sets: tuple[str, ...],
    scorer: str | None,
    selection: str | None,
    sparsity: float | None,
    calibrate: bool,
    job_args: dict[str, Any],
    svc_args: dict[str, Any],
    as_json: bool,
) -> None:
    """Realign, gate, register and (if the gates pass) promote one registered version, now.

    The same job a webhook or the poller would queue, run synchronously in this process: it resolves
    the base and aligned references (nlsr.yaml, version tags, or --base/--aligned), realigns the
    fine-tuned version, runs the safety, over-refusal and utility gates on the fine-tuned, aligned and
    realigned models, registers the realigned version with lineage tags, and moves the alias only on a
    passing verdict. Re-running a finished job reports it; a crashed one resumes where it stopped.
    Exits 1 when the job failed (or failed this time and awaits a retry); a rejection exits 0.
    """
    limit_threads()
    name, version = _parse_model_uri(model_uri)
    overrides = parse_sets(sets)
    overrides.update(
        {
            k: v
            for k, v in (("scorer", scorer), ("selection", selection), ("sparsity", sparsity))
            if v is not None
        }
    )
    svc = build_service(
        **svc_args,
        base_uri=base_uri,
        aligned_uri=aligned_uri,
        gate_limit=gate_limit,
        gate_batch_size=gate_batch_size,
        promote=not no_promote,
        realign_overrides=overrides,
        calibrate=calibrate,
        **job_args,
    )
    outcome = svc.process_version(name, version, trigger="cli", actor="cli")
    if as_json:
        echo_json(outcome.to_dict())
    else:
        click.echo(
            f"{model_uri}: {outcome.state}"
            + (f" -> realigned version {outcome.realigned_version}" if outcome.realigned_version else "")
        )
        for reason in outcome.reasons:
            click.echo(f"  {reason}")
    if outcome.state in ("failed", "queued"):  # the job failed (queued: failed now, a retry is scheduled)
        sys.exit(1)


@click.command()
@click.option("--max-jobs", type=int, default=None, help="Stop after this many jobs.")
@click.option("--idle-exit", type=float, default=None, help="Stop after this many seconds without work.")
@click.option("--poll-interval", type=float, default=2.0, show_default=True, help="Seconds between claims.")
@click.option("--gate-limit", type=int, default=None, help="Items per gate task (default: all).")
@click.option(
    "--lease",
    "lease_seconds",
    type=float,
    default=900.0,
    show_default=True,
    help="Lease length in seconds; a worker that dies loses its job after this long.",
)
@job_options
@with_service
@json_option
@handle_errors
def worker(
    max_jobs: int | None,
    idle_exit: float | None,
    poll_interval: float,
    gate_limit: int | None,
    lease_seconds: float,
    job_args: dict[str, Any],
    svc_args: dict[str, Any],
    as_json: bool,
) -> None:
    """Process queued jobs (run several workers against PostgreSQL to scale out).

    Each job's realign and gates run on its executor (--executor, else the rule's executor:, else in
    this process); the worker keeps the job's lease while the executor runs (docs/scale-out.md).
    """
    limit_threads()
    svc = build_service(
        **svc_args,
        gate_limit=gate_limit,
        lease_seconds=lease_seconds,
        **job_args,
    )
    outcomes = svc.work(max_jobs=max_jobs, idle_exit_s=idle_exit, poll_interval_s=poll_interval)
    if as_json:
        echo_json([o.to_dict() for o in outcomes])
    else:
        for o in outcomes:
            click.echo(f"{o.model_name}/{o.version}: {o.state}")


@click.command()
@click.option("--model", "model_name", default=None, help="Only this registered model.")
@with_service
@json_option
@handle_errors
def status(model_name: str | None, svc_args: dict[str, Any], as_json: bool) -> None:
    """List jobs and their states."""
    from mlflow_nlsr.store.repository import JobStore

    store = JobStore(_store_url(svc_args))
    jobs = store.list_jobs(model_name)
    rows = [
        {
            "job_id": j.id,
            "model": j.model_name,
            "version": j.version,
            "state": str(j.state),
            "attempts": j.attempts,
            "realigned_version": j.realigned_version,
            "trigger": str(j.trigger),
            "updated_at": j.updated_at.isoformat() if j.updated_at else None,
            "last_error": j.last_error,
        }
        for j in jobs
    ]
    if as_json:
        echo_json(rows)
        return
    if not rows:
        click.echo("no jobs")
    for r in rows:
        extra = f" -> v{r['realigned_version']}" if r["realigned_version"] else ""
        click.echo(
            f"#{r['job_id']:<4} {r['model']}/{r['version']:<6} {r['state']:<9}{extra}  ({r['trigger']}, "
            f"attempts {r['attempts']}, {r['updated_at']})"
        )


@click.command()
@click.option("--model", "model_name", default=None, help="Only this registered model.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["md", "json", "jsonl", "csv"]),
    default="md",
    show_default=True,
    help="md/json: the per-version report; jsonl/csv: one audit row per line (for a SIEM).",
)
@click.option("--since", type=click.DateTime(), default=None, help="Only events at or after (UTC).")
@click.option("--until", type=click.DateTime(), default=None, help="Only events before (UTC).")
@click.option("--verify", "verify_chain", is_flag=True, help="Check the audit hash chain; exit 10 if broken.")
@click.option("--output", type=click.Path(dir_okay=False), default=None, help="Write to a file instead.")
@with_service
@json_option
@handle_errors
def audit(
    model_name: str | None,
    fmt: str,
    since: datetime | None,
    until: datetime | None,
    verify_chain: bool,
    output: str | None,
    svc_args: dict[str, Any],
    as_json: bool,
) -> None:
    """Governance report: every version, what was changed, by which config, gate numbers, who and when.

    Every audit row carries the hash of the row before it and of its own content; --verify walks
    that chain and names the first row that was edited, removed or inserted behind the store's back.
    """
    from mlflow_nlsr.cli.audit_report import render_audit, render_events
    from mlflow_nlsr.store.repository import JobStore

    store = JobStore(_store_url(svc_args))
    if verify_chain:
        report = store.verify_chain()
        if as_json:
            echo_json(report.to_dict())
        elif report.ok:
            click.echo(
                f"audit chain OK: {report.checked} row(s) verified, {report.unchained} unchained (pre-0002)"
            )
        else:
            click.echo(f"audit chain BROKEN at row {report.broken_id}: {report.problem}")
        if not report.ok:
            sys.exit(VerificationFailed.exit_code)
        return
    events = store.events(model_name, since=_utc(since), until=_utc(until))
    if fmt in ("jsonl", "csv"):
        text = render_events(events, fmt)
    else:
        text = render_audit(store.list_jobs(model_name), events, fmt)
    if output:
        with open(output, "w", encoding="utf-8") as fh:
            fh.write(text)
        click.echo(f"wrote {output}")
    else:
        click.echo(text, nl=not text.endswith("\n"))


def _utc(value: datetime | None) -> datetime | None:
    """A naive --since/--until is read as UTC."""
    if value is None:
        return None
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value


def _store_url(svc_args: dict[str, Any]) -> str:
    from mlflow_nlsr.service.settings import Settings

    return Settings(store_url=svc_args["store_url"], work_dir=svc_args["work_dir"]).resolved_store_url()
