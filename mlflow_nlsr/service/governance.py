"""Decisions people take on jobs: approve, reject, rollback, requeue, cancel (each audited with the actor).

Contract (used by the CLI and the web review pages; keep these names and signatures):

``approve(service, name, version, *, actor, comment=None) -> Outcome``
    ``name``/``version`` is the *source* (fine-tuned) version whose job is ``awaiting-approval``
    (``JobState.AWAITING_APPROVAL``: the gates passed under ``promotion: manual``). Moves the rule's
    alias (e.g. ``@safe``) to the realigned version, clears ``@<alias>-candidate``, ends the job
    ``promoted`` with ``approved_by = actor``, tags the source ``nlsr.status=promoted`` and
    ``nlsr.approved_by``. Refuses (GovernanceError) to move the alias to the repair of an older source
    version than the one it holds now.
``reject(service, name, version, *, actor, reason) -> Outcome``
    Ends the awaiting job ``rejected`` with ``reason``, clears the candidate alias, tags the source.

Both raise :class:`~mlflow_nlsr.errors.NotAwaitingApproval` when the job is not awaiting approval and
``JobStoreError`` when there is no job. ``actor`` is who acts (see :func:`acting_user`); every audit
row written carries it (``actor`` and ``approved_by``), the registering MLflow user and the host.
"""

from __future__ import annotations

import getpass
import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlflow_nlsr import lineage
from mlflow_nlsr.errors import GovernanceError, NotAwaitingApproval
from mlflow_nlsr.service.notify import notify_job
from mlflow_nlsr.service.promotion import move_alias
from mlflow_nlsr.service.settings import Outcome, job_work_dir
from mlflow_nlsr.store.states import JobState
from mlflow_nlsr.store.tables import Job

if TYPE_CHECKING:
    from mlflow_nlsr.service.orchestrator import NLSRService

APPROVED_BY = "nlsr.approved_by"
USER_ENV = "MLFLOW_TRACKING_USERNAME"


def acting_user(as_user: str | None = None) -> str:
    """Who acts: the MLflow username (``MLFLOW_TRACKING_USERNAME``), else the OS user.

    ``--as`` is honoured only when no MLflow username is set or it names the same user: an
    authenticated user cannot act as someone else.
    """
    authenticated = os.environ.get(USER_ENV)
    if as_user and authenticated and as_user != authenticated:
        raise GovernanceError(f"--as {as_user!r} refused: authenticated as {authenticated!r} ({USER_ENV})")
    return as_user or authenticated or getpass.getuser()


def _awaiting(service: NLSRService, name: str, version: str) -> tuple[Job, dict[str, Any]]:
    job = service.store.get(name, version)
    if job is None or job.state is not JobState.AWAITING_APPROVAL:
        state = "no job" if job is None else f"its job is {job.state.value}"
        raise NotAwaitingApproval(f"{name}/{version} is not awaiting approval ({state})")
    promotion = dict((job.result or {}).get("promotion") or {})
    if not promotion.get("realigned_version"):
        raise GovernanceError(f"{name}/{version}: the job records no realigned version to approve")
    return job, promotion


def approve(
    service: NLSRService, name: str, version: str, *, actor: str, comment: str | None = None
) -> Outcome:
    """Promote the realigned version of an awaiting job (see the module docstring)."""
    job, promo = _awaiting(service, name, str(version))
    target, alias, new = promo["target"], promo["alias"], promo["realigned_version"]
    notes = [f"approved by {actor}" + (f": {comment}" if comment else "")]
    move = move_alias(
        service, target, alias, new, action="approve", actor=actor, job=job, guard=True, reasons=notes
    )
    if not move.moved and move.previous != new:
        raise GovernanceError(
            f"{move.reason}; reject it, or move the alias deliberately with `rollback --to`"
        )
    done = service.store.decide(
        name, version, JobState.PROMOTED, actor=actor, reasons=notes,
        inputs={"comment": comment, "alias": f"{target}@{alias}", "realigned_version": new},
    )  # fmt: skip
    _clear_candidate(service, promo, actor, job)
    _tag(service, job, {lineage.STATUS: JobState.PROMOTED.value, APPROVED_BY: actor})
    notify_job(service.store, service.rules.notify, done, actor=actor, reasons=notes)
    return Outcome.of(done, tuple(notes))


def reject(service: NLSRService, name: str, version: str, *, actor: str, reason: str) -> Outcome:
    """Reject an awaiting job with ``reason`` (see the module docstring)."""
    if not reason or not reason.strip():
        raise GovernanceError("a rejection needs a reason (--reason)")
    job, promo = _awaiting(service, name, str(version))
    done = service.store.decide(
        name, version, JobState.REJECTED, actor=actor, reasons=[f"rejected by {actor}: {reason}"],
        inputs={"realigned_version": promo["realigned_version"]},
    )  # fmt: skip
    _clear_candidate(service, promo, actor, job)
    _tag(service, job, {lineage.STATUS: JobState.REJECTED.value, lineage.REASONS: reason[: lineage.MAX_TAG],
                        APPROVED_BY: actor})  # fmt: skip
    notify_job(service.store, service.rules.notify, done, actor=actor, reasons=[reason])
    return Outcome.of(done, (f"rejected by {actor}: {reason}",))


def rollback(
    service: NLSRService, model: str, *, actor: str, alias: str = "safe", to: str | None = None
) -> dict[str, Any]:
    """Point ``model@alias`` back at the previously promoted version (or ``to``); return the move."""
    current = service.client.find_alias_version(model, alias)
    held = current.version if current is not None else None
    if to is None:
        to = previous_promoted(service, model, alias, held)
    else:
        service.client.get_version(model, to)  # RegistryError when it does not exist
    if to == held:
        raise GovernanceError(f"{model}@{alias} already points at version {to}")
    move_alias(service, model, alias, to, action="rollback", actor=actor, reasons=[f"rollback by {actor}"])
    return {"model": model, "alias": alias, "from_version": held, "to_version": to, "actor": actor}


def previous_promoted(service: NLSRService, model: str, alias: str, held: str | None) -> str:
    """The version promoted (or approved) before the one the alias holds now."""
    promoted = [
        m.to_version for m in service.store.alias_history(model, alias) if m.action in ("promote", "approve")
    ]
    if held in promoted:
        promoted = promoted[: len(promoted) - 1 - promoted[::-1].index(held)]
    for version in reversed(promoted):
        if version is not None and version != held:
            return version
    raise GovernanceError(
        f"{model}@{alias}: no earlier promoted version in the alias history; use --to VERSION"
    )


def requeue(service: NLSRService, name: str, version: str, *, actor: str) -> Outcome:
    """Queue a failed, skipped or cancelled job again from scratch (its work dir is removed)."""
    job = service.store.requeue(name, version, actor=actor)
    shutil.rmtree(
        job_work_dir(Path(service.settings.work_dir), job.model_name, job.version), ignore_errors=True
    )
    _tag(service, job, {lineage.STATUS: JobState.QUEUED.value})
    return Outcome.of(job)


def requeue_states(
    service: NLSRService, states: Iterable[JobState], *, actor: str, model: str | None = None
) -> list[Outcome]:
    """Requeue every job of ``model`` (or all models) in ``states``."""
    jobs = service.store.list_jobs(model, states=list(states))
    return [requeue(service, j.model_name, j.version, actor=actor) for j in jobs]


def cancel(
    service: NLSRService, name: str, version: str, *, actor: str, reason: str | None = None
) -> Outcome:
    """Cancel an unfinished job (a running worker stops at its next step); clears a candidate alias."""
    before = service.store.get(name, version)
    job = service.store.cancel(name, version, actor=actor, reason=reason)
    if before is not None and before.state is JobState.AWAITING_APPROVAL:
        _clear_candidate(service, dict((before.result or {}).get("promotion") or {}), actor, job)
    _tag(service, job, {lineage.STATUS: JobState.CANCELLED.value})
    return Outcome.of(job)


def _clear_candidate(service: NLSRService, promo: dict[str, Any], actor: str, job: Job) -> None:
    target, candidate = promo.get("target"), promo.get("candidate_alias")
    if not target or not candidate:
        return
    current = service.client.find_alias_version(target, candidate)
    if current is not None and current.version == promo.get("realigned_version"):
        move_alias(service, target, candidate, None, action="candidate-cleared", actor=actor, job=job)


def _tag(service: NLSRService, job: Job, tags: dict[str, str]) -> None:
    service.client.set_version_tags(job.model_name, job.version, tags)
