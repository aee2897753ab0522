"""The governance half of the job store: human decisions, cancel/requeue, alias history, watermarks.

Every change here is audited in the same transaction as the change itself, naming the acting person.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from mlflow_nlsr.errors import JobStoreError
from mlflow_nlsr.store._base import StoreBase, job_key
from mlflow_nlsr.store.chain import ChainReport, verify_rows
from mlflow_nlsr.store.states import (
    PARKED_STATES,
    REQUEUEABLE_STATES,
    TERMINAL_STATES,
    JobState,
    check_transition,
    parse_state,
)
from mlflow_nlsr.store.tables import AliasMove, AuditEvent, Job, Watermark


class AdminStore(StoreBase):
    """Decisions a person takes on jobs, and the bookkeeping of aliases and the poller."""

    def _job(self, s: Session, model_name: str, version: str | int) -> Job:
        name, ver = job_key(model_name, version)
        job = s.scalar(select(Job).where(Job.model_name == name, Job.version == ver).with_for_update())
        if job is None:
            raise JobStoreError(f"no job for {name}/{ver}; queue it with `mlflow nlsr run` or the poller")
        return job

    def decide(
        self,
        model_name: str,
        version: str | int,
        state: str | JobState,
        *,
        actor: str,
        reasons: Sequence[str] | str | None = None,
        inputs: Mapping[str, Any] | None = None,
    ) -> Job:
        """Move a parked job (awaiting approval) on by a person's decision; the actor becomes the approver."""
        with self._write() as s:
            job = self._job(s, model_name, version)
            if job.state not in PARKED_STATES:
                raise JobStoreError(
                    f"{job.model_name}/{job.version} is {job.state.value}, not awaiting a decision"
                )
            previous = job.state
            job.state = check_transition(job.state, state)
            job.approved_by = actor
            job.updated_at = self._clock()
            event = "approved" if job.state is JobState.PROMOTED else job.state.value
            details = {"from": previous.value, "to": job.state.value, **dict(inputs or {})}
            self._record(s, event, job, actor, inputs=details, decision=job.state.value, reasons=reasons)
            return job

    def cancel(self, model_name: str, version: str | int, *, actor: str, reason: str | None = None) -> Job:
        """Cancel an unfinished job; a worker running it loses its lease at its next step."""
        with self._write() as s:
            job = self._job(s, model_name, version)
            if job.state in TERMINAL_STATES:
                raise JobStoreError(f"{job.model_name}/{job.version} is already {job.state.value}")
            previous, owner = job.state, job.lease_owner
            job.state = check_transition(job.state, JobState.CANCELLED)
            job.lease_owner = job.lease_expires_at = None
            job.updated_at = self._clock()
            details = {"from": previous.value, "lease_owner": owner}
            self._record(s, "cancelled", job, actor, inputs=details, decision="cancelled", reasons=reason)
            return job

    def requeue(self, model_name: str, version: str | int, *, actor: str) -> Job:
        """Reopen a failed, skipped or cancelled job: queued again with its attempts reset."""
        with self._write() as s:
            job = self._job(s, model_name, version)
            if job.state not in REQUEUEABLE_STATES:
                allowed = ", ".join(sorted(st.value for st in REQUEUEABLE_STATES))
                raise JobStoreError(
                    f"{job.model_name}/{job.version} is {job.state.value}; "
                    f"only {allowed} jobs can be requeued"
                )
            details = {"from": job.state.value, "attempts": job.attempts, "last_error": job.last_error}
            job.state, job.attempts = JobState.QUEUED, 0
            job.last_error = job.not_before = job.result = job.realigned_version = None
            job.lease_owner = job.lease_expires_at = None
            job.updated_at = self._clock()
            self._record(s, "requeued", job, actor, inputs=details)
            return job

    def note_registered_by(self, job_id: int, user: str | None) -> None:
        """Remember who registered the job's source version (first value wins)."""
        if not user:
            return
        with self._write() as s:
            job = s.get(Job, job_id)
            if job is not None and job.registered_by is None:
                job.registered_by = user

    # -- aliases --------------------------------------------------------------------------------
    @contextmanager
    def alias_lock(self, model_name: str, alias: str) -> Iterator[Session]:
        """Hold an exclusive lock on ``model_name@alias`` while the caller checks and moves it.

        SQLite: the write transaction itself (``BEGIN IMMEDIATE``). PostgreSQL: an advisory lock keyed
        by the alias. Moves recorded with :meth:`record_alias_move` inside the block commit with it.
        """
        with self._write() as s:
            s.connection()  # begin now: on SQLite this BEGIN IMMEDIATE is the lock (sessions begin lazily)
            if s.get_bind().dialect.name == "postgresql":
                key = int.from_bytes(
                    hashlib.sha256(f"{model_name}@{alias}".encode()).digest()[:8], "big", signed=True
                )
                s.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
            yield s

    def record_alias_move(
        self,
        s: Session,
        *,
        model_name: str,
        alias: str,
        from_version: str | None,
        to_version: str | None,
        action: str,
        actor: str,
        job: Job | None = None,
        reasons: Sequence[str] | str | None = None,
    ) -> AliasMove:
        """Store one alias move (inside :meth:`alias_lock`) and audit it."""
        move = AliasMove(
            at=self._clock(), model_name=model_name, alias=alias, from_version=from_version,
            to_version=to_version, action=action, actor=actor, job_id=job.id if job else None,
        )  # fmt: skip
        s.add(move)
        details = {"alias": alias, "from": from_version, "to": to_version, "action": action,
                   "model": model_name}  # fmt: skip
        if job is not None:
            current = s.get(Job, job.id) or job
            self._record(s, "alias-moved", current, actor, inputs=details, decision=action, reasons=reasons)
        else:
            from mlflow_nlsr.store import audit as _audit

            _audit.record(
                s, "alias-moved", at=self._clock(), actor=actor, model_name=model_name,
                version=to_version or "-", inputs=details, decision=action, reasons=reasons,
                approved_by=actor,
            )  # fmt: skip
        s.flush()
        return move

    def alias_history(self, model_name: str, alias: str | None = None) -> list[AliasMove]:
        """Every recorded move of the model's aliases (one alias when given), oldest first."""
        query = select(AliasMove).where(AliasMove.model_name == model_name).order_by(AliasMove.id)
        if alias is not None:
            query = query.where(AliasMove.alias == alias)
        with self._read() as s:
            return list(s.scalars(query).all())

    # -- poller watermarks ------------------------------------------------------------------------
    def watermark(self, model_name: str) -> int | None:
        """The newest creation time (ms) the poller saw for a model ('*' = the poller's start), or None."""
        with self._read() as s:
            row = s.get(Watermark, model_name)
            return None if row is None else int(row.seen_ms)

    def raise_watermark(self, model_name: str, seen_ms: int) -> None:
        """Move a model's watermark forward to ``seen_ms`` (never back)."""
        with self._write() as s:
            row = s.get(Watermark, model_name)
            if row is None:
                s.add(Watermark(model_name=model_name, seen_ms=int(seen_ms)))
            elif seen_ms > row.seen_ms:
                row.seen_ms = int(seen_ms)

    # -- audit chain and export ---------------------------------------------------------------------
    def verify_chain(self) -> ChainReport:
        """Walk the whole audit hash chain and report the first broken row (store/chain.py)."""
        with self._read() as s:
            return verify_rows(s.scalars(select(AuditEvent).order_by(AuditEvent.id)))

    def events(
        self,
        model_name: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        states: Sequence[str] | None = None,
    ) -> list[AuditEvent]:
        """Audit rows in append order, filtered by model and time window (``since`` ≤ at < ``until``)."""
        query = select(AuditEvent).order_by(AuditEvent.id)
        if model_name is not None:
            query = query.where(AuditEvent.model_name == model_name)
        if since is not None:
            query = query.where(AuditEvent.at >= since)
        if until is not None:
            query = query.where(AuditEvent.at < until)
        if states is not None:
            query = query.where(AuditEvent.decision.in_([parse_state(st).value for st in states]))
        with self._read() as s:
            return list(s.scalars(query).all())
