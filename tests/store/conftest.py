"""Job-store fixtures: a real SQLite file per test and, when reachable, a fresh PostgreSQL database each."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from mlflow_nlsr.store import JobStore, sqlite_url

# Override with NLSR_TEST_POSTGRES_URL (any database the user may CREATE DATABASE from).
_PG_CANDIDATES = [
    os.environ.get("NLSR_TEST_POSTGRES_URL", ""),
    "postgresql+psycopg://postgres@127.0.0.1:5432/test",
    "postgresql+psycopg://root@127.0.0.1:5432/test",
]
_pg_admin: list[str | None] = []


def _reachable_pg_admin_url() -> str | None:
    """Return the first candidate admin URL that accepts a connection (cached per session)."""
    if not _pg_admin:
        found = None
        for url in filter(None, _PG_CANDIDATES):
            engine = create_engine(url, connect_args={"connect_timeout": 3})
            try:
                with engine.connect() as conn:
                    conn.execute(text("SELECT 1"))
                found = url
                break
            except (OperationalError, ImportError):
                continue
            finally:
                engine.dispose()
        _pg_admin.append(found)
    return _pg_admin[0]


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A freshly created, empty PostgreSQL database, dropped after the test."""
    admin_url = _reachable_pg_admin_url()
    if admin_url is None:
        pytest.skip("PostgreSQL at 127.0.0.1:5432 (database 'test', user postgres/root) is unreachable")
    name = f"nlsr_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def sqlite_store_url(tmp_path) -> str:
    """The URL of a not-yet-created SQLite job-store file under tmp_path."""
    return sqlite_url(tmp_path / "state" / "jobs.db")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request) -> str:
    """The URL of an empty job store: a SQLite file, then a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_store_url")
    return request.getfixturevalue("pg_url")


class FakeClock:
    """A settable UTC clock so lease and backoff tests need no sleeping."""

    def __init__(self) -> None:
        self.now = datetime(2030, 1, 1, 12, 0, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> FakeClock:
    """A fake clock starting at 2030-01-01 12:00 UTC."""
    return FakeClock()


@pytest.fixture
def store(store_url, clock) -> Iterator[JobStore]:
    """A migrated JobStore on the fake clock (3 attempts, 10 s backoff base, 60 s cap)."""
    with JobStore(store_url, clock=clock, max_attempts=3, backoff_base_s=10.0, backoff_max_s=60.0) as s:
        yield s
