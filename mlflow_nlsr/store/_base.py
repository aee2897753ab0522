"""Shared plumbing of the job store: engine, sessions, audit lines after commit, and the read-side queries.

Write transactions go through ``_write`` (on SQLite they open with ``BEGIN IMMEDIATE``, see
``store.engine``) and emit their audit JSON lines only after commit; reads use plain ``BEGIN``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from mlflow_nlsr.errors import JobStoreError
from mlflow_nlsr.store import audit as _audit
from mlflow_nlsr.store.engine import READ_ONLY, make_engine, migrate
from mlflow_nlsr.store.states import JobState, parse_state
from mlflow_nlsr.store.tables import AuditEvent, Job

Clock = Callable[[], datetime]
_S = TypeVar("_S", bound="StoreBase")


def utcnow() -> datetime:
    """Return the current time, timezone-aware UTC."""
    return datetime.now(timezone.utc)


def normalize_version(version: str | int) -> str:
    """Return a model version as text (``3``, ``"3"`` and ``"03"`` all become ``"3"``)."""
    ver = str(version).strip()
    if not ver:
        raise JobStoreError(f"expected a model version, found {version!r}")
    return str(int(ver)) if ver.isdigit() else ver


def job_key(model_name: str, version: str | int) -> tuple[str, str]:
    """Return the normalised unique key (model_name, version) of a job."""
    name = str(model_name).strip()
    if not name:
        raise JobStoreError(f"expected a model name, found {model_name!r}")
    return name, normalize_version(version)


class StoreBase:
    """Engine, sessions and the read/append half of :class:`JobStore` (no job state changes here)."""

    def __init__(
        self,
        url: str,
        *,
        auto_migrate: bool = True,
        clock: Clock = utcnow,
        max_attempts: int = 3,
        backoff_base_s: float = 30.0,
        backoff_max_s: float = 3600.0,
    ) -> None:
        if max_attempts < 1 or backoff_base_s < 0 or backoff_max_s < backoff_base_s:
            raise JobStoreError(
                "expected max_attempts >= 1 and 0 <= backoff_base_s <= backoff_max_s, found "
                f"{max_attempts}, {backoff_base_s}, {backoff_max_s}"
            )
        self.url = url
        self.engine = make_engine(url)
        self._clock = clock
        self.max_attempts = max_attempts
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._reads = sessionmaker(self.engine.execution_options(**{READ_ONLY: True}), expire_on_commit=False)
        if auto_migrate:
            self.migrate()

    def migrate(self) -> str:
        """Upgrade the schema to the newest revision; return it (idempotent, concurrency-safe)."""
        return migrate(self.engine)

    def close(self) -> None:
        """Release the pooled database connections."""
        self.engine.dispose()

    def __enter__(self: _S) -> _S:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _write(self) -> Iterator[Session]:
        session = self._sessions()
        try:
            with session.begin():
                yield session
            lines = _audit.take_pending(session)
        except SQLAlchemyError as exc:
            _audit.discard_pending(session)
            raise JobStoreError(f"job store operation failed on {self.engine.url!r}: {exc}") from exc
        finally:
            session.close()
        _audit.emit(lines)

    @contextmanager
    def _read(self) -> Iterator[Session]:
        try:
            with self._reads() as session, session.begin():
                yield session
        except SQLAlchemyError as exc:
            raise JobStoreError(f"job store read failed on {self.engine.url!r}: {exc}") from exc

    def _record(self, session: Session, event: str, job: Job, actor: str, **kw: Any) -> None:
        _audit.record(
            session, event, at=self._clock(), actor=actor, model_name=job.model_name,
            version=job.version, job_id=job.id, registered_by=job.registered_by,
            approved_by=job.approved_by, **kw,
        )  # fmt: skip

    def get(self, model_name: str, version: str | int) -> Job | None:
        """Return the job of (model_name, version), or None."""
        name, ver = job_key(model_name, version)
        with self._read() as s:
            return s.scalar(select(Job).where(Job.model_name == name, Job.version == ver))

    def get_by_id(self, job_id: int) -> Job | None:
        """Return the job with primary key ``job_id``, or None."""
        with self._read() as s:
            return s.get(Job, job_id)

    def list_jobs(
        self, model_name: str | None = None, states: Iterable[str | JobState] | None = None
    ) -> list[Job]:
        """Return jobs in creation order, optionally only one model's and only in ``states``."""
        query = select(Job).order_by(Job.id)
        if model_name is not None:
            query = query.where(Job.model_name == model_name)
        if states is not None:
            query = query.where(Job.state.in_([parse_state(st) for st in states]))
        with self._read() as s:
            return list(s.scalars(query).all())

    def audit(
        self,
        event: str,
        *,
        actor: str,
        model_name: str,
        version: str | int,
        job_id: int | None = None,
        inputs: Mapping[str, Any] | None = None,
        decision: str | None = None,
        reasons: Sequence[str] | str | None = None,
    ) -> AuditEvent:
        """Append one audit event (there is no way to change or remove it afterwards)."""
        name, ver = job_key(model_name, version)
        with self._write() as s:
            return _audit.record(
                s, event, at=self._clock(), actor=actor, model_name=name, version=ver, job_id=job_id,
                inputs=inputs, decision=decision, reasons=reasons,
            )  # fmt: skip

    def audit_trail(
        self, model_name: str | None = None, version: str | int | None = None
    ) -> list[AuditEvent]:
        """Return audit events in the order they were appended, optionally for one model (and version)."""
        query = select(AuditEvent).order_by(AuditEvent.id)
        if model_name is not None:
            query = query.where(AuditEvent.model_name == model_name)
        if version is not None:
            query = query.where(AuditEvent.version == normalize_version(version))
        with self._read() as s:
            return list(s.scalars(query).all())
