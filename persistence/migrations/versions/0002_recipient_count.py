"""Count every envelope recipient of an execution toward the hourly limit.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("email_agent_executions") as batch_op:
        batch_op.add_column(
            sa.Column("recipient_count", sa.Integer(), nullable=False, server_default="1")
        )


def downgrade() -> None:
    with op.batch_alter_table("email_agent_executions") as batch_op:
        batch_op.drop_column("recipient_count")
