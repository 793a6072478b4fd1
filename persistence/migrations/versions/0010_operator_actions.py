"""What operators do by hand (acknowledging an escalation, adding or removing a suppression):
when, with which key, and why.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "operator_actions",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("workspace_id", sa.String(36), sa.ForeignKey("workspaces.id"), nullable=False),
        sa.Column("action", sa.String(40), nullable=False),
        sa.Column("subject", sa.String(400), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("key_fingerprint", sa.String(12), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index(
        "ix_operator_actions_subject", "operator_actions", ["workspace_id", "action", "subject"]
    )


def downgrade() -> None:
    op.drop_index("ix_operator_actions_subject", table_name="operator_actions")
    op.drop_table("operator_actions")
