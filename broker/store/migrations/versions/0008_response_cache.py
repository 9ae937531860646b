"""response cache: a request's cache token, how a hit was answered, and the cost it avoided;
a ledger row per hit (charged 0) so every report counts hits and savings from one table

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("requests") as batch:
        batch.add_column(sa.Column("cache", sa.String(length=96), nullable=True))
        batch.add_column(sa.Column("cache_hit", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("cache_source_id", sa.String(length=40), nullable=True))
        batch.add_column(sa.Column("cost_avoided_micros", sa.BigInteger(), nullable=True))
    with op.batch_alter_table("cost_ledger") as batch:
        batch.add_column(sa.Column("cache_hit", sa.String(length=16), nullable=True))
        batch.add_column(
            sa.Column("cost_avoided_micros", sa.BigInteger(), nullable=False, server_default="0")
        )
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(
            sa.Column("n_cache_hits", sa.Integer(), nullable=False, server_default="0")
        )
        batch.add_column(
            sa.Column("cost_avoided_micros", sa.BigInteger(), nullable=False, server_default="0")
        )


def downgrade() -> None:
    with op.batch_alter_table("cost_ledger") as batch:
        batch.drop_column("cost_avoided_micros")
        batch.drop_column("cache_hit")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("cost_avoided_micros")
        batch.drop_column("n_cache_hits")
    with op.batch_alter_table("requests") as batch:
        batch.drop_column("cost_avoided_micros")
        batch.drop_column("cache_source_id")
        batch.drop_column("cache_hit")
        batch.drop_column("cache")
