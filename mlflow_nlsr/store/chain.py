"""The audit hash chain: each row stores the previous row's hash and the hash of its own content.

``row_hash = sha256(prev_hash + newline + canonical JSON of the row's content)``. Editing a row (outside
the ORM: the database triggers refuse it, but a DBA can drop them) changes its content hash; deleting
or inserting a row breaks the next row's ``prev_hash``. :func:`verify_rows` walks the chain in id order
and names the first row that does not check out. Rows written before migration 0002 carry no hashes
and are reported as unchained; the chain starts at the first hashed row from :data:`GENESIS`.

Appends are serialised so two writers never chain onto the same row: SQLite write transactions hold
the database lock (``BEGIN IMMEDIATE``), PostgreSQL takes a transaction-level advisory lock.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from mlflow_nlsr.errors import JobStoreError
from mlflow_nlsr.store.tables import AuditEvent

GENESIS = "0" * 64
_PG_AUDIT_LOCK = 0x6E6C7361  # "nlsa"


def content_hash(prev_hash: str, content: Mapping[str, Any]) -> str:
    """Return the hash of one row's content chained onto ``prev_hash``."""
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(f"{prev_hash}\n{canonical}".encode()).hexdigest()


def last_hash(session: Session) -> str:
    """Lock the chain for this transaction and return the hash of its last row (GENESIS when empty)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_AUDIT_LOCK})
    query = select(AuditEvent.row_hash).where(AuditEvent.row_hash.is_not(None))
    found = session.scalar(query.order_by(AuditEvent.id.desc()).limit(1))
    return found or GENESIS


def seal(session: Session, row: AuditEvent) -> None:
    """Fill ``prev_hash`` and ``row_hash`` of a row about to be inserted."""
    row.prev_hash = last_hash(session)
    row.row_hash = content_hash(row.prev_hash, _roundtrip(row.content()))


def _roundtrip(content: Mapping[str, Any]) -> dict[str, Any]:
    """The content as it will read back from the database (JSON fields pass through JSON text)."""
    out = dict(content)
    for key in ("inputs", "reasons"):
        if out[key] is not None:
            try:
                out[key] = json.loads(json.dumps(out[key], sort_keys=True, default=str))
            except (TypeError, ValueError) as exc:
                raise JobStoreError(f"expected JSON-serialisable audit {key}: {exc}") from exc
    return out


@dataclass
class ChainReport:
    """What walking the chain found: rows checked, unchained legacy rows, the first broken row."""

    checked: int = 0
    unchained: int = 0
    broken_id: int | None = None
    problem: str | None = None
    first_id: int | None = None
    last_id: int | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when every chained row checks out."""
        return self.broken_id is None

    def to_dict(self) -> dict[str, Any]:
        """JSON view."""
        return {
            "ok": self.ok,
            "checked": self.checked,
            "unchained": self.unchained,
            "first_id": self.first_id,
            "last_id": self.last_id,
            "broken_id": self.broken_id,
            "problem": self.problem,
            **self.details,
        }


def verify_rows(rows: Iterable[AuditEvent]) -> ChainReport:
    """Walk rows in id order; stop at the first whose hash or link does not match."""
    report = ChainReport()
    prev: str | None = None
    for row in rows:
        if row.row_hash is None:
            if prev is None:
                report.unchained += 1
                continue
            return _broken(report, row, "row carries no hash after the chain started")
        expected_prev = prev or GENESIS
        report.first_id = report.first_id or row.id
        if row.prev_hash != expected_prev:
            return _broken(
                report, row, f"prev_hash {row.prev_hash} does not match the previous row's {expected_prev} "
                "(a row before it was removed, inserted or re-hashed)",
            )  # fmt: skip
        actual = content_hash(row.prev_hash, row.content())
        if actual != row.row_hash:
            return _broken(report, row, f"content hash {actual} differs from the stored {row.row_hash} "
                           "(the row was edited after it was written)")  # fmt: skip
        prev = row.row_hash
        report.checked += 1
        report.last_id = row.id
    return report


def _broken(report: ChainReport, row: AuditEvent, problem: str) -> ChainReport:
    report.broken_id, report.problem = row.id, problem
    report.details = {"broken_row": row.to_dict()}
    return report
