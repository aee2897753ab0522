"""``JobStore``: the durable job queue (one job per model version) with leases, retries and an audit trail.

Claiming is atomic: on PostgreSQL the candidate row is taken with ``SELECT … FOR UPDATE SKIP LOCKED``;
on SQLite every write transaction opens with ``BEGIN IMMEDIATE`` (see ``store.engine``), so the
read-then-update of a claim runs under the single database write lock. A worker owns a job while it
is the ``lease_owner``; once its lease expires another worker may reclaim the job (keeping a
``realigned``/``gated`` state, so the service resumes), and every later call of the first worker
fails with "lease lost". Every state change is audited in the same transaction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mlflow_nlsr.errors import JobStoreError
from mlflow_nlsr.store._base import Clock, job_key, utcnow
from mlflow_nlsr.store.admin import AdminStore
from mlflow_nlsr.store.states import (
    ACTIVE_STATES,
    PARKED_STATES,
    TERMINAL_STATES,
    JobState,
    Trigger,
    check_transition,
    parse_state,
    parse_trigger,
)
from mlflow_nlsr.store.tables import Job

UPDATABLE_FIELDS = frozenset({"config_sha256", "result", "last_error", "realigned_version"})
STORE_ACTOR = "nlsr-store"
__all__ = ["Clock", "JobStore", "open_store", "utcnow"]


class JobStore(AdminStore):
    """Jobs and audit events in a SQL database (SQLite file or PostgreSQL), migrated on open."""

    def enqueue(
        self,
        model_name: str,
        version: str | int,
        trigger: str | Trigger,
        actor: str,
        *,
        max_attempts: int | None = None,
        inputs: Mapping[str, Any] | None = None,
        registered_by: str | None = None,
    ) -> tuple[Job, bool]:
        """Queue a job for (model_name, version); an existing job is returned with ``created=False``."""
        name, ver = job_key(model_name, version)
        trig = parse_trigger(trigger)
        details = {"trigger": trig.value, **(inputs or {})}
        for _ in range(2):
            try:
                with self._write() as s:
                    job = s.scalar(select(Job).where(Job.model_name == name, Job.version == ver))
                    if job is not None:
                        self._record(s, "duplicate", job, actor, inputs=details, decision=job.state.value)
                        return job, False
                    now = self._clock()
                    job = Job(
                        model_name=name, version=ver, state=JobState.QUEUED, attempts=0,
                        max_attempts=max_attempts or self.max_attempts, created_at=now, updated_at=now,
                        trigger=trig, registered_by=registered_by or None,
                    )  # fmt: skip
                    s.add(job)
                    s.flush()
                    self._record(s, "enqueued", job, actor, inputs=details)
                    return job, True
            except JobStoreError as exc:
                if not isinstance(exc.__cause__, IntegrityError):
                    raise
                # another process inserted the same key between our SELECT and INSERT: read it back
        raise JobStoreError(f"could not enqueue {name}/{ver}: the unique key kept conflicting")

    def claim(self, worker_id: str, lease_seconds: float, *, job_id: int | None = None) -> Job | None:
        """Atomically take one due queued job, or one whose lease expired, and lease it to ``worker_id``."""
        if lease_seconds <= 0:
            raise JobStoreError(f"expected lease_seconds > 0, found {lease_seconds}")
        with self._write() as s:
            now = self._clock()
            self._reap_exhausted(s, now)
            free = or_(Job.lease_owner.is_(None), Job.lease_expires_at <= now)
            due = or_(Job.not_before.is_(None), Job.not_before <= now)
            query = select(Job).where(
                Job.state.in_(sorted(ACTIVE_STATES)), Job.attempts < Job.max_attempts, free, due
            )
            if job_id is not None:
                query = query.where(Job.id == job_id)
            job = s.scalar(query.order_by(Job.id).limit(1).with_for_update(skip_locked=True))
            if job is None:
                return None
            previous_owner, previous_state = job.lease_owner, job.state
            if job.state is JobState.QUEUED:
                job.state = check_transition(job.state, JobState.RUNNING)
            job.attempts += 1
            job.lease_owner = worker_id
            job.lease_expires_at = now + timedelta(seconds=lease_seconds)
            job.heartbeat_at = now
            job.not_before = None
            job.updated_at = now
            details: dict[str, Any] = {"attempt": job.attempts, "lease_seconds": lease_seconds}
            if previous_owner is not None:
                details.update(previous_owner=previous_owner, resumed_state=previous_state.value)
            event = "reclaimed" if previous_owner is not None else "claimed"
            self._record(s, event, job, worker_id, inputs=details)
            return job

    def _reap_exhausted(self, s: Session, now: datetime) -> None:
        """Fail active jobs whose lease expired after their last allowed attempt."""
        stuck = s.scalars(
            select(Job)
            .where(
                Job.state.in_(sorted(ACTIVE_STATES)),
                Job.attempts >= Job.max_attempts,
                or_(Job.lease_owner.is_(None), Job.lease_expires_at <= now),
            )
            .limit(100)
            .with_for_update(skip_locked=True)
        ).all()
        for job in stuck:
            reason = (
                f"lease of {job.lease_owner!r} expired in state {job.state.value!r} "
                f"after {job.attempts} of {job.max_attempts} attempts"
            )
            job.state, job.last_error = JobState.FAILED, reason
            job.lease_owner = job.lease_expires_at = None
            job.updated_at = now
            self._record(s, "failed", job, STORE_ACTOR, decision=JobState.FAILED.value, reasons=[reason])

    def _owned(self, s: Session, job_id: int, worker_id: str) -> Job:
        job = s.scalar(select(Job).where(Job.id == job_id).with_for_update())
        if job is None:
            raise JobStoreError(f"no job with id {job_id}")
        if job.state in TERMINAL_STATES:
            raise JobStoreError(
                f"lease lost: job {job_id} ({job.model_name}/{job.version}) is already {job.state.value}"
            )
        if job.lease_owner != worker_id:
            raise JobStoreError(
                f"lease lost: job {job_id} ({job.model_name}/{job.version}) is held by "
                f"{job.lease_owner!r}, not {worker_id!r}"
            )
        return job

    def heartbeat(self, job_id: int, worker_id: str, lease_seconds: float) -> Job:
        """Extend the lease of ``worker_id``; raise JobStoreError 'lease lost' if it is not the owner."""
        if lease_seconds <= 0:
            raise JobStoreError(f"expected lease_seconds > 0, found {lease_seconds}")
        with self._write() as s:
            job = self._owned(s, job_id, worker_id)
            now = self._clock()
            job.lease_expires_at = now + timedelta(seconds=lease_seconds)
            job.heartbeat_at = job.updated_at = now
            return job

    def advance(self, job_id: int, worker_id: str, new_state: str | JobState, **fields: Any) -> Job:
        """Move an owned job to ``new_state`` (checked against the transition table) and set ``fields``."""
        return self._move(job_id, worker_id, new_state, fields, reasons=None)

    def finish(
        self,
        job_id: int,
        worker_id: str,
        state: str | JobState,
        *,
        result: Any = None,
        reasons: Sequence[str] | str | None = None,
        **fields: Any,
    ) -> Job:
        """End an owned job in a terminal state or park it (awaiting approval); release it."""
        target = parse_state(state)
        if target not in TERMINAL_STATES | PARKED_STATES:
            names = ", ".join(sorted(s.value for s in TERMINAL_STATES | PARKED_STATES))
            raise JobStoreError(f"finish expects a terminal state ({names}), found {target.value!r}")
        if result is not None:
            fields["result"] = result
        return self._move(job_id, worker_id, target, fields, reasons=reasons)

    def _move(
        self,
        job_id: int,
        worker_id: str,
        new_state: str | JobState,
        fields: Mapping[str, Any],
        *,
        reasons: Sequence[str] | str | None,
    ) -> Job:
        unknown = set(fields) - UPDATABLE_FIELDS
        if unknown:
            raise JobStoreError(
                f"unknown job fields {sorted(unknown)}; expected some of {sorted(UPDATABLE_FIELDS)}"
            )
        with self._write() as s:
            job = self._owned(s, job_id, worker_id)
            previous = job.state
            job.state = check_transition(job.state, new_state)
            for name, value in fields.items():
                setattr(job, name, str(value) if name == "realigned_version" and value is not None else value)
            job.updated_at = self._clock()
            terminal = job.state in TERMINAL_STATES | PARKED_STATES
            if terminal:
                job.lease_owner = job.lease_expires_at = None
            details: dict[str, Any] = {"from": previous.value, "to": job.state.value}
            details.update({k: v for k, v in fields.items() if k != "result"})
            self._record(
                s, job.state.value, job, worker_id, inputs=details,
                decision=job.state.value if terminal else None, reasons=reasons,
            )  # fmt: skip
            return job

    def fail(self, job_id: int, worker_id: str, error: str, *, retry: bool) -> Job:
        """Record a failure: with ``retry`` and attempts left, release the job with backoff; else fail it."""
        with self._write() as s:
            job = self._owned(s, job_id, worker_id)
            now = self._clock()
            job.last_error = str(error)
            job.updated_at = now
            if retry and job.attempts < job.max_attempts:
                delay = min(self.backoff_base_s * 2 ** max(job.attempts - 1, 0), self.backoff_max_s)
                if job.state is JobState.RUNNING:
                    job.state = check_transition(job.state, JobState.QUEUED)
                job.lease_owner = job.lease_expires_at = None
                job.not_before = now + timedelta(seconds=delay)
                details = {
                    "attempt": job.attempts, "backoff_s": delay, "not_before": job.not_before.isoformat()
                }  # fmt: skip
                self._record(
                    s, "retry", job, worker_id, inputs=details, decision="retry", reasons=[job.last_error]
                )
                return job
            job.state = check_transition(job.state, JobState.FAILED)
            job.lease_owner = job.lease_expires_at = None
            reasons = [job.last_error]
            if retry:
                reasons.append(f"gave up after {job.attempts} of {job.max_attempts} attempts")
            details = {"attempt": job.attempts, "retry_requested": retry}
            self._record(s, "failed", job, worker_id, inputs=details, decision="failed", reasons=reasons)
            return job


def open_store(url: str, **options: Any) -> JobStore:
    """Open (and migrate) the job store at ``url``; ``options`` go to :class:`JobStore`."""
    return JobStore(url, **options)
