"""budgets: limit overrides, trace ids, paused teams, cache savings, stale-attempt index

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("requests", sa.Column("trace_id", sa.String(length=128), nullable=True))
    op.create_index("ix_requests_status_dispatched", "requests", ["status", "dispatched_at"])
    with op.batch_alter_table("cost_ledger") as batch:
        batch.add_column(
            sa.Column("cache_savings_micros", sa.BigInteger(), nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("trace_id", sa.String(length=128), nullable=True))
    op.add_column("team_settings", sa.Column("paused_reason", sa.Text(), nullable=True))
    op.add_column(
        "team_settings", sa.Column("paused_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.create_table(
        "budget_limits",
        sa.Column("budget_id", sa.String(length=200), nullable=False),
        sa.Column("limit_micros", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("budget_id"),
    )


def downgrade() -> None:
    op.drop_table("budget_limits")
    op.drop_column("team_settings", "paused_at")
    op.drop_column("team_settings", "paused_reason")
    with op.batch_alter_table("cost_ledger") as batch:
        batch.drop_column("trace_id")
        batch.drop_column("cache_savings_micros")
    op.drop_index("ix_requests_status_dispatched", table_name="requests")
    op.drop_column("requests", "trace_id")
