"""an index of routed requests by when they finished (the routes report, /metrics' routed
counters and the spend chart's routing panel read them by window)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

ROUTED = sa.text("route IS NOT NULL")


def upgrade() -> None:
    op.create_index(
        "ix_requests_routed_finished",
        "requests",
        ["status", "finished_at"],
        sqlite_where=ROUTED,
        postgresql_where=ROUTED,
    )


def downgrade() -> None:
    op.drop_index("ix_requests_routed_finished", table_name="requests")
