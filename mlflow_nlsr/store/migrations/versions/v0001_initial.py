"""Initial job-store schema: jobs, append-only audit events.

Revision ID: 0001
Revises:
Create Date: 2026-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_AUDIT_GUARD_PG = [
    """CREATE FUNCTION nlsr_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN
           RAISE EXCEPTION USING MESSAGE = 'nlsr_audit_events is append-only (' || TG_OP || ' refused)';
       END
       $$""",
    """CREATE TRIGGER nlsr_audit_no_change BEFORE UPDATE OR DELETE ON nlsr_audit_events
       FOR EACH ROW EXECUTE FUNCTION nlsr_audit_append_only()""",
]

_AUDIT_GUARD_SQLITE = [
    """CREATE TRIGGER nlsr_audit_no_update BEFORE UPDATE ON nlsr_audit_events
       BEGIN SELECT RAISE(ABORT, 'nlsr_audit_events is append-only (UPDATE refused)'); END""",
    """CREATE TRIGGER nlsr_audit_no_delete BEFORE DELETE ON nlsr_audit_events
       BEGIN SELECT RAISE(ABORT, 'nlsr_audit_events is append-only (DELETE refused)'); END""",
]


def upgrade() -> None:
    """Create nlsr_jobs and nlsr_audit_events, and forbid UPDATE/DELETE on audit rows."""
    op.create_table(
        "nlsr_jobs",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("model_name", sa.String(256), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("lease_owner", sa.String(256), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("not_before", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("config_sha256", sa.String(64), nullable=True),
        sa.Column("result", sa.Text(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("realigned_version", sa.String(64), nullable=True),
        sa.UniqueConstraint("model_name", "version", name="uq_nlsr_jobs_model_version"),
    )
    op.create_index("ix_nlsr_jobs_state", "nlsr_jobs", ["state"])
    op.create_table(
        "nlsr_audit_events",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("job_id", sa.Integer(), sa.ForeignKey("nlsr_jobs.id"), nullable=True),
        sa.Column("model_name", sa.String(256), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("actor", sa.String(256), nullable=False),
        sa.Column("event", sa.String(64), nullable=False),
        sa.Column("inputs", sa.Text(), nullable=True),
        sa.Column("decision", sa.String(64), nullable=True),
        sa.Column("reasons", sa.Text(), nullable=True),
    )
    op.create_index("ix_nlsr_audit_model_version", "nlsr_audit_events", ["model_name", "version"])
    dialect = op.get_bind().dialect.name
    guards = {"postgresql": _AUDIT_GUARD_PG, "sqlite": _AUDIT_GUARD_SQLITE}.get(dialect, [])
    for statement in guards:
        op.execute(statement)


def downgrade() -> None:
    """Drop the job-store tables and the audit guard."""
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS nlsr_audit_no_change ON nlsr_audit_events")
        op.execute("DROP FUNCTION IF EXISTS nlsr_audit_append_only()")
    op.drop_index("ix_nlsr_audit_model_version", table_name="nlsr_audit_events")
    op.drop_table("nlsr_audit_events")
    op.drop_index("ix_nlsr_jobs_state", table_name="nlsr_jobs")
    op.drop_table("nlsr_jobs")
