"""Group-chat transcripts, stored with the execution they sent.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "agent_transcripts",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("workspace_id", sa.String(length=36), nullable=False),
        sa.Column("circuit_execution_id", sa.String(length=128), nullable=True),
        sa.Column("email_id", sa.String(length=36), nullable=True),
        sa.Column("stop_reason", sa.Text(), nullable=True),
        sa.Column("messages", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["email_id"], ["email_agent_executions.id"]),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspaces.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("agent_transcripts") as batch_op:
        batch_op.create_index("ix_agent_transcripts_workspace_id", ["workspace_id"])
        batch_op.create_index("ix_agent_transcripts_circuit_execution_id", ["circuit_execution_id"])
        batch_op.create_index("ix_agent_transcripts_email_id", ["email_id"])


def downgrade() -> None:
    op.drop_table("agent_transcripts")
