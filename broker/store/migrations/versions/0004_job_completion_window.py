"""jobs: completion window (expires_at)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_jobs_status_expires", "jobs", ["status", "expires_at"])


def downgrade() -> None:
    op.drop_index("ix_jobs_status_expires", table_name="jobs")
    op.drop_column("jobs", "expires_at")
