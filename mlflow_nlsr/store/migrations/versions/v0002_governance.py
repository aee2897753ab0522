"""Governance: who (registering user, approver, host), an audit hash chain, alias history, watermarks.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-07

``nlsr_jobs.state`` widens to 32 characters for ``awaiting-approval``. Audit rows written before this
revision carry no hashes; ``mlflow nlsr audit --verify`` reports them as unchained and starts the chain
at the first hashed row.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_AUDIT_COLUMNS = ("registered_by", "approved_by", "host", "prev_hash", "row_hash")


def upgrade() -> None:
    """Add the who/hash columns, the alias history and the poller watermarks."""
    dialect = op.get_bind().dialect.name
    if dialect != "sqlite":  # SQLite ignores VARCHAR lengths; a batch rebuild would drop the guards
        op.alter_column("nlsr_jobs", "state", type_=sa.String(32), existing_type=sa.String(16))
    op.add_column("nlsr_jobs", sa.Column("registered_by", sa.String(256), nullable=True))
    op.add_column("nlsr_jobs", sa.Column("approved_by", sa.String(256), nullable=True))
    for name in _AUDIT_COLUMNS:
        size = 64 if name.endswith("hash") else 256
        op.add_column("nlsr_audit_events", sa.Column(name, sa.String(size), nullable=True))
    op.create_table(
        "nlsr_alias_moves",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("model_name", sa.String(256), nullable=False),
        sa.Column("alias", sa.String(256), nullable=False),
        sa.Column("from_version", sa.String(64), nullable=True),
        sa.Column("to_version", sa.String(64), nullable=True),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("actor", sa.String(256), nullable=False),
        sa.Column("job_id", sa.Integer(), sa.ForeignKey("nlsr_jobs.id"), nullable=True),
    )
    op.create_index("ix_nlsr_alias_moves_model_alias", "nlsr_alias_moves", ["model_name", "alias"])
    op.create_table(
        "nlsr_watermarks",
        sa.Column("model_name", sa.String(256), primary_key=True),
        sa.Column("seen_ms", sa.BigInteger(), nullable=False),
    )


def downgrade() -> None:
    """Drop what upgrade added (audit columns stay on SQLite: dropping would rebuild the guarded table)."""
    op.drop_table("nlsr_watermarks")
    op.drop_index("ix_nlsr_alias_moves_model_alias", table_name="nlsr_alias_moves")
    op.drop_table("nlsr_alias_moves")
    if op.get_bind().dialect.name == "sqlite":
        return
    for name in _AUDIT_COLUMNS:
        op.drop_column("nlsr_audit_events", name)
    op.drop_column("nlsr_jobs", "approved_by")
    op.drop_column("nlsr_jobs", "registered_by")
    op.alter_column("nlsr_jobs", "state", type_=sa.String(16), existing_type=sa.String(32))
