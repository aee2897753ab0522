"""Alembic environment of the job store.

``mlflow_nlsr.store.engine.migrate`` passes an open connection (already inside the locked transaction)
through ``config.attributes["connection"]``; no ``alembic.ini`` is needed at run time. Without one
(``alembic`` CLI use), the URL comes from ``sqlalchemy.url``.
"""

from __future__ import annotations

from alembic import context

from mlflow_nlsr.store.tables import VERSION_TABLE, Base

config = context.config


def _run_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=Base.metadata,
        version_table=VERSION_TABLE,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is None:
        from mlflow_nlsr.store.engine import make_engine

        url = config.get_main_option("sqlalchemy.url")
        if not url:
            raise RuntimeError("expected sqlalchemy.url or an open connection in config.attributes")
        with make_engine(url).begin() as conn:
            _configure_and_run(conn)
        return
    _configure_and_run(connection)


def _configure_and_run(connection: object) -> None:
    context.configure(
        connection=connection,  # type: ignore[arg-type]
        target_metadata=Base.metadata,
        version_table=VERSION_TABLE,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    _run_offline()
else:
    _run_online()
