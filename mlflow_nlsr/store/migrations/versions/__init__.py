"""Alembic revisions of the job store."""
