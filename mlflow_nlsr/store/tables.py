"""SQLAlchemy 2.0 typed models of the job store: ``Job`` (one per model version) and ``AuditEvent``.

Tables carry an ``nlsr_`` prefix so the store may share a database with MLflow's own tables. The
schema itself is created by the Alembic migrations in ``store/migrations``, never by ``create_all``.
Timestamps are stored as UTC and always read back timezone-aware; JSON fields are stored as text.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    BigInteger,
    DateTime,
    Dialect,
    Enum,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    event,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from mlflow_nlsr.errors import JobStoreError
from mlflow_nlsr.store.states import PARKED_STATES, TERMINAL_STATES, JobState, Trigger

JOBS_TABLE = "nlsr_jobs"
AUDIT_TABLE = "nlsr_audit_events"
VERSION_TABLE = "nlsr_alembic_version"
ALIAS_TABLE = "nlsr_alias_moves"
WATERMARK_TABLE = "nlsr_watermarks"


class UTCDateTime(TypeDecorator[datetime]):
    """A DateTime stored as UTC and returned timezone-aware on every backend (SQLite drops tzinfo)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise JobStoreError(f"expected a timezone-aware datetime, found naive {value.isoformat()}")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


class JSONText(TypeDecorator[Any]):
    """Any JSON-serialisable value stored as canonical text (sorted keys)."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        if value is None:
            return None
        try:
            return json.dumps(value, sort_keys=True, default=str)
        except (TypeError, ValueError) as exc:
            raise JobStoreError(f"expected a JSON-serialisable value, found {type(value).__name__}") from exc

    def process_result_value(self, value: str | None, dialect: Dialect) -> Any:
        return None if value is None else json.loads(value)


def _enum(cls: type[JobState] | type[Trigger], name: str, length: int = 16) -> Enum:
    return Enum(
        cls,
        name=name,
        native_enum=False,
        create_constraint=False,
        length=length,
        values_callable=lambda members: [m.value for m in members],
        validate_strings=True,
    )


class Base(DeclarativeBase):
    """Declarative base of the job-store models."""


class Job(Base):
    """One realignment job for a registered model version; unique per (model_name, version)."""

    __tablename__ = JOBS_TABLE
    __table_args__ = (
        UniqueConstraint("model_name", "version", name="uq_nlsr_jobs_model_version"),
        Index("ix_nlsr_jobs_state", "state"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model_name: Mapped[str] = mapped_column(String(256))
    version: Mapped[str] = mapped_column(String(64))
    state: Mapped[JobState] = mapped_column(_enum(JobState, "nlsr_job_state", 32), default=JobState.QUEUED)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    lease_owner: Mapped[str | None] = mapped_column(String(256), default=None)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    not_before: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    trigger: Mapped[Trigger] = mapped_column(_enum(Trigger, "nlsr_job_trigger"))
    config_sha256: Mapped[str | None] = mapped_column(String(64), default=None)
    result: Mapped[Any] = mapped_column(JSONText, nullable=True, default=None)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    realigned_version: Mapped[str | None] = mapped_column(String(64), default=None)
    #: the MLflow user who registered the source version (``ModelVersion.user_id`` or its run's user)
    registered_by: Mapped[str | None] = mapped_column(String(256), default=None)
    #: the person who approved or rejected it under manual promotion
    approved_by: Mapped[str | None] = mapped_column(String(256), default=None)

    @property
    def terminal(self) -> bool:
        """Return True when the job is in a terminal state."""
        return self.state in TERMINAL_STATES

    @property
    def settled(self) -> bool:
        """Return True when no worker will run the job again (terminal, or parked awaiting a person)."""
        return self.state in TERMINAL_STATES or self.state in PARKED_STATES

    def __repr__(self) -> str:
        return (
            f"Job(id={self.id}, model={self.model_name!r}, version={self.version!r}, "
            f"state={self.state.value}, attempts={self.attempts}/{self.max_attempts}, "
            f"owner={self.lease_owner!r})"
        )


class AuditEvent(Base):
    """One append-only audit record: who did what to which model version, with inputs and decision."""

    __tablename__ = AUDIT_TABLE
    __table_args__ = (Index("ix_nlsr_audit_model_version", "model_name", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    job_id: Mapped[int | None] = mapped_column(ForeignKey(f"{JOBS_TABLE}.id"), default=None)
    model_name: Mapped[str] = mapped_column(String(256))
    version: Mapped[str] = mapped_column(String(64))
    actor: Mapped[str] = mapped_column(String(256))
    event: Mapped[str] = mapped_column(String(64))
    inputs: Mapped[Any] = mapped_column(JSONText, nullable=True, default=None)
    decision: Mapped[str | None] = mapped_column(String(64), default=None)
    reasons: Mapped[Any] = mapped_column(JSONText, nullable=True, default=None)
    registered_by: Mapped[str | None] = mapped_column(String(256), default=None)
    approved_by: Mapped[str | None] = mapped_column(String(256), default=None)
    host: Mapped[str | None] = mapped_column(String(256), default=None)
    #: hash chain (store/chain.py): the previous row's row_hash and this row's own content hash
    prev_hash: Mapped[str | None] = mapped_column(String(64), default=None)
    row_hash: Mapped[str | None] = mapped_column(String(64), default=None)

    def content(self) -> dict[str, Any]:
        """The hashed fields of the row (everything but ``id`` and the two hashes)."""
        return {
            "at": self.at.astimezone(timezone.utc).isoformat(),
            "job_id": self.job_id,
            "model_name": self.model_name,
            "version": self.version,
            "actor": self.actor,
            "event": self.event,
            "inputs": self.inputs,
            "decision": self.decision,
            "reasons": self.reasons,
            "registered_by": self.registered_by,
            "approved_by": self.approved_by,
            "host": self.host,
        }

    def to_dict(self) -> dict[str, Any]:
        """Return the event as a JSON-ready dict (``at`` as ISO-8601 UTC)."""
        return {
            "id": self.id,
            "at": self.at.isoformat(),
            "job_id": self.job_id,
            "model_name": self.model_name,
            "version": self.version,
            "actor": self.actor,
            "event": self.event,
            "inputs": self.inputs,
            "decision": self.decision,
            "reasons": self.reasons,
            "registered_by": self.registered_by,
            "approved_by": self.approved_by,
            "host": self.host,
            "prev_hash": self.prev_hash,
            "row_hash": self.row_hash,
        }


class AliasMove(Base):
    """One move of a registry alias made by NLSR (promotion, approval, candidate, rollback)."""

    __tablename__ = ALIAS_TABLE
    __table_args__ = (Index("ix_nlsr_alias_moves_model_alias", "model_name", "alias"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    model_name: Mapped[str] = mapped_column(String(256))
    alias: Mapped[str] = mapped_column(String(256))
    from_version: Mapped[str | None] = mapped_column(String(64), default=None)
    to_version: Mapped[str | None] = mapped_column(String(64), default=None)
    action: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(String(256))
    job_id: Mapped[int | None] = mapped_column(ForeignKey(f"{JOBS_TABLE}.id"), default=None)

    def to_dict(self) -> dict[str, Any]:
        """JSON view."""
        return {
            "id": self.id,
            "at": self.at.isoformat(),
            "model_name": self.model_name,
            "alias": self.alias,
            "from_version": self.from_version,
            "to_version": self.to_version,
            "action": self.action,
            "actor": self.actor,
            "job_id": self.job_id,
        }


class Watermark(Base):
    """The poller's high-water mark: the newest version creation time (ms) seen per model ('*' = start)."""

    __tablename__ = WATERMARK_TABLE

    model_name: Mapped[str] = mapped_column(String(256), primary_key=True)
    seen_ms: Mapped[int] = mapped_column(BigInteger)


@event.listens_for(AuditEvent, "before_update")
def _forbid_audit_update(mapper: Any, connection: Any, target: AuditEvent) -> None:
    raise JobStoreError(f"audit events are append-only; refused to update audit event {target.id}")


@event.listens_for(AuditEvent, "before_delete")
def _forbid_audit_delete(mapper: Any, connection: Any, target: AuditEvent) -> None:
    raise JobStoreError(f"audit events are append-only; refused to delete audit event {target.id}")
