"""Engines for the job store and the Alembic upgrade run on start.

SQLite (the single-host default) gets SQLAlchemy-controlled transactions that open with
``BEGIN IMMEDIATE`` so two processes can never both hold a write transaction (claims are then
serialised by the database file lock), WAL journaling so readers do not block the writer, and a
30 s busy timeout. PostgreSQL (several workers) uses psycopg 3; migrations there take a transaction-level
advisory lock so two workers starting at once upgrade the schema exactly once.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.pool import StaticPool

from mlflow_nlsr.errors import JobStoreError
from mlflow_nlsr.store.tables import VERSION_TABLE

_LOG = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
READ_ONLY = "nlsr_read_only"
_SQLITE_BUSY_TIMEOUT_S = 30.0
_PG_MIGRATION_LOCK = 0x6E6C7372  # "nlsr"; any constant shared by every worker of this package


def sqlite_url(path: str | Path) -> str:
    """Return the SQLAlchemy URL of a SQLite job-store file at ``path``."""
    return f"sqlite:///{Path(path).expanduser().resolve()}"


def normalize_url(url: str) -> str:
    """Return ``url`` with a plain ``postgresql://``/``postgres://`` scheme mapped to psycopg 3."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def make_engine(url: str) -> Engine:
    """Create the engine for a store URL (``sqlite:///path/jobs.db`` or ``postgresql+psycopg://…``)."""
    try:
        parsed = make_url(normalize_url(url))
    except ArgumentError as exc:
        raise JobStoreError(f"expected a SQLAlchemy database URL for the job store, found {url!r}") from exc
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(parsed.render_as_string(hide_password=False), parsed.database)
    try:
        return create_engine(parsed, pool_pre_ping=True)
    except (ArgumentError, ImportError) as exc:
        raise JobStoreError(f"cannot open job store {parsed!r}: {exc}") from exc


def _sqlite_engine(url: str, database: str | None) -> Engine:
    in_memory = database in (None, "", ":memory:")
    if in_memory:
        engine = create_engine(url, connect_args={"check_same_thread": False}, poolclass=StaticPool)
    else:
        Path(str(database)).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": _SQLITE_BUSY_TIMEOUT_S})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, connection_record: Any) -> None:
        # Take transaction control away from sqlite3 so that BEGIN is ours (see _on_begin).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {int(_SQLITE_BUSY_TIMEOUT_S * 1000)}")
        cursor.execute("PRAGMA foreign_keys = ON")
        if not in_memory:
            # WAL: readers never block the writer; NORMAL sync is durable across process crashes in WAL.
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # A deferred BEGIN would let two claimers read the same queued row and race to upgrade their
        # locks; IMMEDIATE takes the write lock up front, so read-then-update is atomic.
        read_only = conn.get_execution_options().get(READ_ONLY, False)
        conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

    return engine


def _alembic_config(connection: Connection | None = None) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    """Return the newest migration revision shipped with this package."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    if head is None:
        raise JobStoreError(f"expected one migration head under {MIGRATIONS_DIR}, found none")
    return head


def current_revision(engine: Engine) -> str | None:
    """Return the schema revision recorded in the database, or None before the first migration."""
    with engine.execution_options(**{READ_ONLY: True}).connect() as conn:
        if not inspect(conn).has_table(VERSION_TABLE):
            return None
        return conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()


def migrate(engine: Engine) -> str:
    """Upgrade the schema to head in one locked transaction (idempotent, safe when run concurrently)."""
    from alembic import command

    try:
        with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK})
            command.upgrade(_alembic_config(conn), "head")
    except SQLAlchemyError as exc:
        raise JobStoreError(f"could not migrate the job store at {engine.url!r}: {exc}") from exc
    revision = current_revision(engine)
    if revision is None:
        raise JobStoreError(f"migration of {engine.url!r} finished but recorded no revision")
    return revision
