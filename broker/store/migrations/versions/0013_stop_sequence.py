"""requests.stop_sequence: the stop sequence that ended an answer, when the provider says
which (Anthropic's Messages does; OpenAI's Chat Completions does not)

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("requests", sa.Column("stop_sequence", sa.String(length=1000), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("requests") as batch:
        batch.drop_column("stop_sequence")
