"""Migrations shipped inside the package create the schema on open, are idempotent, match the models,
and need no alembic.ini."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

import mlflow_nlsr
from mlflow_nlsr.store import JobStore, head_revision
from mlflow_nlsr.store.engine import MIGRATIONS_DIR, _alembic_config, current_revision, make_engine
from mlflow_nlsr.store.tables import AUDIT_TABLE, JOBS_TABLE, VERSION_TABLE, Base

TABLES = {JOBS_TABLE, AUDIT_TABLE, VERSION_TABLE}


def test_opening_a_store_creates_the_tables_at_head(store_url):
    with JobStore(store_url) as store:
        names = set(inspect(store.engine).get_table_names())
        assert names >= TABLES
        assert current_revision(store.engine) == head_revision()


def test_auto_migrate_false_leaves_the_database_untouched(store_url):
    with JobStore(store_url, auto_migrate=False) as store:
        assert not set(inspect(store.engine).get_table_names()) & TABLES
        assert current_revision(store.engine) is None


def test_migrating_twice_is_a_no_op_that_keeps_data(store_url):
    with JobStore(store_url) as store:
        store.enqueue("m", 1, "cli", "tester")
        assert store.migrate() == head_revision()
        assert store.migrate() == head_revision()
    with JobStore(store_url) as reopened:
        assert [j.version for j in reopened.list_jobs()] == ["1"]
        with reopened.engine.connect() as conn:
            assert conn.execute(text(f"SELECT count(*) FROM {VERSION_TABLE}")).scalar() == 1


def test_migrated_schema_matches_the_models(store_url):
    with JobStore(store_url) as store, store.engine.connect() as conn:
        opts = {"version_table": VERSION_TABLE, "compare_type": _compare_type}
        context = MigrationContext.configure(conn, opts=opts)
        diffs = compare_metadata(context, Base.metadata)
    assert diffs == []


def _compare_type(context, inspected_column, metadata_column, inspected_type, metadata_type):
    """Alembic's type check, except VARCHAR lengths on SQLite (unenforced there; 0002 widens them on PG)."""
    if context.dialect.name == "sqlite" and {type(inspected_type).__name__, type(metadata_type).__name__} <= {
        "VARCHAR", "String", "Enum"
    }:  # fmt: skip
        return False
    return None


def test_downgrade_to_base_removes_the_tables(store_url):
    with JobStore(store_url) as store:
        with store.engine.begin() as conn:
            command.downgrade(_alembic_config(conn), "base")
        remaining = set(inspect(store.engine).get_table_names())
        assert not remaining & {JOBS_TABLE, AUDIT_TABLE}
        assert store.migrate() == head_revision()


def test_migrations_are_package_data_and_need_no_ini():
    package_dir = Path(mlflow_nlsr.__file__).resolve().parent
    assert MIGRATIONS_DIR.is_relative_to(package_dir)
    assert (MIGRATIONS_DIR / "env.py").is_file()
    assert list((MIGRATIONS_DIR / "versions").glob("v*.py"))
    assert not (MIGRATIONS_DIR / "alembic.ini").exists()


def test_version_table_is_prefixed_so_mlflow_tables_can_share_the_database(sqlite_store_url):
    engine = make_engine(sqlite_store_url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)"))
        conn.execute(text("INSERT INTO alembic_version VALUES ('mlflow_head')"))
    engine.dispose()
    with JobStore(sqlite_store_url) as store:
        with store.engine.connect() as conn:
            assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == "mlflow_head"
        assert current_revision(store.engine) == head_revision()


@pytest.mark.parametrize("bad", ["not a url", "nosuchdb://x/y"])
def test_a_malformed_store_url_is_a_job_store_error(bad):
    from mlflow_nlsr.errors import JobStoreError

    with pytest.raises(JobStoreError, match="job store"):
        JobStore(bad)
