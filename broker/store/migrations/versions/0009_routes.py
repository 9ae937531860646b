"""routes: the route (virtual model) a request asked for and how it chose its tier

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("requests") as batch:
        batch.add_column(sa.Column("route", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("route_decision", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("requests") as batch:
        batch.drop_column("route_decision")
        batch.drop_column("route")
