"""Job store: one durable job per registered model version, leases, retries and an append-only audit trail.

SQLAlchemy 2.0 on a SQLite file (single host) or PostgreSQL (several workers); the schema is managed by
the Alembic migrations shipped in ``store/migrations`` and applied when a store is opened.
"""

from __future__ import annotations

from mlflow_nlsr.store.audit import AUDIT_LOGGER_NAME
from mlflow_nlsr.store.engine import head_revision, make_engine, sqlite_url
from mlflow_nlsr.store.repository import JobStore, open_store, utcnow
from mlflow_nlsr.store.states import (
    ACTIVE_STATES,
    TERMINAL_STATES,
    TRANSITIONS,
    JobState,
    Trigger,
    check_transition,
    is_allowed,
)
from mlflow_nlsr.store.tables import AuditEvent, Job

__all__ = [
    "ACTIVE_STATES",
    "AUDIT_LOGGER_NAME",
    "TERMINAL_STATES",
    "TRANSITIONS",
    "AuditEvent",
    "Job",
    "JobState",
    "JobStore",
    "Trigger",
    "check_transition",
    "head_revision",
    "is_allowed",
    "make_engine",
    "open_store",
    "sqlite_url",
    "utcnow",
]
