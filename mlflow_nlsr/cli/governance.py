"""``mlflow nlsr approve | reject | rollback | requeue | cancel | gc``: decisions people take (audited)."""

from __future__ import annotations

import sys
from typing import Any

import click

from mlflow_nlsr.cli._common import echo_json, handle_errors, json_option
from mlflow_nlsr.cli._service import build_service, with_service
from mlflow_nlsr.errors import ConfigError

_as_option = click.option(
    "--as",
    "as_user",
    default=None,
    help="Act as this user (refused when MLFLOW_TRACKING_USERNAME names someone else). "
    "Default: MLFLOW_TRACKING_USERNAME, else the OS user.",
)


def _report(outcome: Any, as_json: bool) -> None:
    if as_json:
        echo_json(outcome.to_dict())
        return
    extra = f" (realigned version {outcome.realigned_version})" if outcome.realigned_version else ""
    click.echo(f"{outcome.model_name}/{outcome.version}: {outcome.state}{extra}")
    for reason in outcome.reasons:
        click.echo(f"  {reason}")


@click.command()
@click.argument("model")
@click.argument("version")
@click.option("--comment", default=None, help="Why it is approved (kept in the audit trail).")
@_as_option
@with_service
@json_option
@handle_errors
def approve(
    model: str,
    version: str,
    comment: str | None,
    as_user: str | None,
    svc_args: dict[str, Any],
    as_json: bool,
) -> None:
    """Approve the realigned version of MODEL/VERSION (a source version awaiting approval).

    Moves the rule's alias (e.g. @safe) to the realigned version and clears @<alias>-candidate.
    """
    from mlflow_nlsr.service import governance

    svc = build_service(**svc_args)
    outcome = governance.approve(svc, model, version, actor=governance.acting_user(as_user), comment=comment)
    _report(outcome, as_json)


@click.command()
@click.argument("model")
@click.argument("version")
@click.option("--reason", required=True, help="Why it is rejected (tagged on the version and audited).")
@_as_option
@with_service
@json_option
@handle_errors
def reject(
    model: str, version: str, reason: str, as_user: str | None, svc_args: dict[str, Any], as_json: bool
) -> None:
    """Reject the realigned version of MODEL/VERSION (a source version awaiting approval)."""
    from mlflow_nlsr.service import governance

    svc = build_service(**svc_args)
    outcome = governance.reject(svc, model, version, actor=governance.acting_user(as_user), reason=reason)
    _report(outcome, as_json)


@click.command()
@click.argument("model")
@click.option("--to", "to_version", default=None, help="Point the alias at this version instead.")
@click.option("--alias", default="safe", show_default=True, help="The alias to roll back.")
@_as_option
@with_service
@json_option
@handle_errors
def rollback(
    model: str,
    to_version: str | None,
    alias: str,
    as_user: str | None,
    svc_args: dict[str, Any],
    as_json: bool,
) -> None:
    """Point MODEL@ALIAS back at the version promoted before the current one (or --to VERSION)."""
    from mlflow_nlsr.service import governance

    svc = build_service(**svc_args)
    move = governance.rollback(svc, model, actor=governance.acting_user(as_user), alias=alias, to=to_version)
    if as_json:
        echo_json(move)
    else:
        click.echo(f"{model}@{alias}: {move['from_version']} -> {move['to_version']} (by {move['actor']})")


@click.command()
@click.argument("model", required=False)
@click.argument("version", required=False)
@click.option("--failed", is_flag=True, help="Requeue every failed job (of MODEL when given).")
@click.option("--skipped", is_flag=True, help="Requeue every skipped job (of MODEL when given).")
@click.option("--cancelled", is_flag=True, help="Requeue every cancelled job (of MODEL when given).")
@_as_option
@with_service
@json_option
@handle_errors
def requeue(
    model: str | None,
    version: str | None,
    failed: bool,
    skipped: bool,
    cancelled: bool,
    as_user: str | None,
    svc_args: dict[str, Any],
    as_json: bool,
) -> None:
    """Queue MODEL VERSION again from scratch (a failed, skipped or cancelled job), or many with flags.

    The job's work dir is removed, its attempts reset, and a worker (or `run`) picks it up again.
    """
    from mlflow_nlsr.service import governance
    from mlflow_nlsr.store.states import JobState

    states = [s for s, on in ((JobState.FAILED, failed), (JobState.SKIPPED, skipped),
                              (JobState.CANCELLED, cancelled)) if on]  # fmt: skip
    if bool(states) == bool(version):
        raise ConfigError("give MODEL VERSION, or --failed/--skipped/--cancelled (optionally with MODEL)")
    svc = build_service(**svc_args)
    actor = governance.acting_user(as_user)
    if version is not None and model is not None:
        outcomes = [governance.requeue(svc, model, version, actor=actor)]
    else:
        outcomes = governance.requeue_states(svc, states, actor=actor, model=model)
    if as_json:
        echo_json([o.to_dict() for o in outcomes])
        return
    if not outcomes:
        click.echo("nothing to requeue")
    for o in outcomes:
        click.echo(f"{o.model_name}/{o.version}: requeued (job {o.job_id})")


@click.command()
@click.argument("model")
@click.argument("version")
@click.option("--reason", default=None, help="Why (audited).")
@_as_option
@with_service
@json_option
@handle_errors
def cancel(
    model: str,
    version: str,
    reason: str | None,
    as_user: str | None,
    svc_args: dict[str, Any],
    as_json: bool,
) -> None:
    """Cancel the unfinished job of MODEL VERSION (a running worker stops at its next step)."""
    from mlflow_nlsr.service import governance

    svc = build_service(**svc_args)
    outcome = governance.cancel(svc, model, version, actor=governance.acting_user(as_user), reason=reason)
    _report(outcome, as_json)
    if outcome.state != "cancelled":
        sys.exit(1)


@click.command()
@click.option(
    "--failed-days",
    type=float,
    default=None,
    help="Keep failed/cancelled work dirs and unused references this long (default: nlsr.yaml "
    "retention.failed_days, else 7).",
)
@click.option("--verify-references", is_flag=True, help="Also rehash cached references; drop damaged ones.")
@click.option("--dry-run", is_flag=True, help="Only list what would be removed.")
@with_service
@json_option
@handle_errors
def gc(
    failed_days: float | None, verify_references: bool, dry_run: bool, svc_args: dict[str, Any], as_json: bool
) -> None:
    """Free disk: settled jobs' work dirs, failed ones after --failed-days, unused cached references."""
    from mlflow_nlsr.rules import Rules
    from mlflow_nlsr.service.retention import collect
    from mlflow_nlsr.service.settings import Settings
    from mlflow_nlsr.store.repository import JobStore

    settings = Settings(store_url=svc_args["store_url"], work_dir=svc_args["work_dir"])
    if failed_days is None:
        failed_days = Rules.load(svc_args["config_path"]).retention.failed_days
    report = collect(JobStore(settings.resolved_store_url()), settings.work_dir, failed_days=failed_days,
                     dry_run=dry_run, verify_references=verify_references)  # fmt: skip
    if as_json:
        echo_json(report.to_dict())
        return
    for path in report.damaged:
        click.echo(f"damaged reference (content does not match its hash): {path}")
    verb = "would remove" if dry_run else "removed"
    for path in report.removed:
        click.echo(f"{verb} {path}")
    click.echo(f"{verb} {len(report.removed)} path(s), {report.freed_bytes / 1e6:.1f} MB")
