"""Alembic migrations of the job store (script_location resolved from this package's path)."""
