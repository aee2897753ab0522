"""Where a gated job ends: promoted, parked for approval, registered only, or rejected.

Every alias move goes through :func:`move_alias`, which holds the job store's lock on ``model@alias``
while it reads where the alias points, decides and moves it, and records the move in the alias history
(``nlsr_alias_moves``) in the same transaction. Automatic promotion never moves an alias backwards: if
the alias already points at the repair of a *newer* source version of the same model (a retry or a
slower worker finishing an older version last), the job ends ``registered`` and says why.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mlflow_nlsr import lineage
from mlflow_nlsr.registry.client import VersionInfo
from mlflow_nlsr.rules import Rule
from mlflow_nlsr.store.states import JobState
from mlflow_nlsr.store.tables import Job

if TYPE_CHECKING:
    from mlflow_nlsr.service.orchestrator import NLSRService


@dataclass(frozen=True)
class Decision:
    """The state a gated job ends in, why, and where its promotion points (kept in the job result)."""

    state: JobState
    reasons: list[str]
    promotion: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Move:
    """The outcome of one :func:`move_alias` call."""

    moved: bool
    previous: str | None
    reason: str = ""


def conclude(
    service: NLSRService, job: Job, rule: Rule, target: str, new_version: str, result: Any
) -> Decision:
    """Decide (and carry out) the end of a gated job whose realigned version ``new_version`` is registered."""
    reasons = list(result.get("reasons", []))
    info = {"target": target, "alias": rule.alias, "mode": rule.promotion, "candidate_alias": rule.candidate,
            "realigned_version": str(new_version)}  # fmt: skip
    if not result["verdict"]["passed"]:
        return Decision(JobState.REJECTED, reasons, info)
    if not (service.settings.promote and rule.promote):
        return Decision(
            JobState.REGISTERED,
            ["gates passed; promotion disabled (--no-promote or rule promote: false)"],
            info,
        )
    actor = service.settings.worker_id
    if rule.promotion == "manual":
        move_alias(service, target, rule.candidate, new_version, action="candidate", actor=actor, job=job)
        why = f"gates passed; awaiting approval ({target}@{rule.candidate} -> {new_version})"
        return Decision(JobState.AWAITING_APPROVAL, [why, *reasons], info)
    move = move_alias(
        service, target, rule.alias, new_version, action="promote", actor=actor, job=job, guard=True
    )
    if not move.moved:
        return Decision(JobState.REGISTERED, [move.reason, *reasons], info)
    return Decision(JobState.PROMOTED, reasons, info)


def move_alias(
    service: NLSRService,
    target: str,
    alias: str,
    version: str | None,
    *,
    action: str,
    actor: str,
    job: Job | None = None,
    guard: bool = False,
    reasons: list[str] | None = None,
) -> Move:
    """Point ``target@alias`` at ``version`` (None: remove it) under the store's alias lock; record the move.

    With ``guard``, refuse a move to the repair of an older source version than the alias holds now.
    """
    store, client = service.store, service.client
    with store.alias_lock(target, alias) as session:
        current = client.find_alias_version(target, alias)
        previous = current.version if current is not None else None
        if previous == (str(version) if version is not None else None):
            return Move(False, previous, f"{target}@{alias} already points at {version}")
        if guard and current is not None and job is not None:
            newer = _newer_source(current, job, alias)
            if newer is not None:
                return Move(False, previous, newer)
        if version is None:
            client.delete_alias(target, alias)
        else:
            client.set_alias(target, alias, version)
        store.record_alias_move(
            session, model_name=target, alias=alias, from_version=previous,
            to_version=None if version is None else str(version), action=action, actor=actor, job=job,
            reasons=reasons,
        )  # fmt: skip
    return Move(True, previous)


def _newer_source(current: VersionInfo, job: Job, alias: str) -> str | None:
    """Why the alias must stay (it holds the repair of a newer source version), or None."""
    if current.tags.get(lineage.SOURCE_MODEL) != job.model_name:
        return None
    held = current.tags.get(lineage.SOURCE_VERSION, "")
    if not (held.isdigit() and job.version.isdigit()) or int(held) <= int(job.version):
        return None
    return (
        f"gates passed, alias not moved: {current.name}@{alias} points at version {current.version}, "
        f"the repair of source version {held}, newer than {job.version} "
        "(promotion never moves an alias backwards)"
    )
