"""Append-only audit records: one row per event, mirrored as one JSON line on ``mlflow_nlsr.audit``.

Rows are only ever inserted (the ORM refuses updates/deletes, and the migration installs database
triggers that refuse them too), and each is sealed into a hash chain (``store/chain.py``) so an edit
made behind the triggers' back is detected by ``mlflow nlsr audit --verify``. Every row names the host
that wrote it, and for job events the MLflow user who registered the version and its approver.
The JSON line is emitted after the transaction that wrote the row commits, so the log never
reports an event the database rolled back.
"""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from mlflow_nlsr.errors import JobStoreError
from mlflow_nlsr.store.chain import seal
from mlflow_nlsr.store.tables import AuditEvent

AUDIT_LOGGER_NAME = "mlflow_nlsr.audit"
AUDIT_LOGGER = logging.getLogger(AUDIT_LOGGER_NAME)
_PENDING = "nlsr_pending_audit_lines"


def normalize_reasons(reasons: Sequence[str] | str | None) -> list[str] | None:
    """Return reasons as a list of strings (a bare string becomes a one-item list)."""
    if reasons is None:
        return None
    if isinstance(reasons, str):
        return [reasons]
    if not isinstance(reasons, Sequence):
        raise JobStoreError(f"expected audit reasons as a list of strings, found {type(reasons).__name__}")
    return [str(r) for r in reasons]


def record(
    session: Session,
    event: str,
    *,
    at: datetime,
    actor: str,
    model_name: str,
    version: str,
    job_id: int | None = None,
    inputs: Mapping[str, Any] | None = None,
    decision: str | None = None,
    reasons: Sequence[str] | str | None = None,
    registered_by: str | None = None,
    approved_by: str | None = None,
) -> AuditEvent:
    """Insert one sealed audit row in ``session`` and queue its JSON line for emission after commit."""
    if not event or not actor:
        raise JobStoreError(f"expected a non-empty audit event and actor, found {event!r} and {actor!r}")
    if inputs is not None and not isinstance(inputs, Mapping):
        raise JobStoreError(f"expected audit inputs as a mapping, found {type(inputs).__name__}")
    row = AuditEvent(
        at=at,
        job_id=job_id,
        model_name=model_name,
        version=version,
        actor=actor,
        event=event,
        inputs=dict(inputs) if inputs is not None else None,
        decision=decision,
        reasons=normalize_reasons(reasons),
        registered_by=registered_by,
        approved_by=approved_by,
        host=socket.gethostname(),
    )
    seal(session, row)
    session.add(row)
    session.flush()
    session.info.setdefault(_PENDING, []).append(row.to_dict())
    return row


def take_pending(session: Session) -> list[dict[str, Any]]:
    """Remove and return the audit lines queued in ``session``."""
    lines: list[dict[str, Any]] = session.info.pop(_PENDING, [])
    return lines


def discard_pending(session: Session) -> None:
    """Forget queued audit lines (their transaction rolled back)."""
    session.info.pop(_PENDING, None)


def emit(lines: Sequence[Mapping[str, Any]]) -> None:
    """Log each audit record as one JSON line on the ``mlflow_nlsr.audit`` logger."""
    for line in lines:
        AUDIT_LOGGER.info(json.dumps(line, sort_keys=True, default=str))
