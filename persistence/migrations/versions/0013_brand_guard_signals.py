"""Brand-guard signals: a workspace's complaint or unsubscribe rate crossing a threshold, and
the pause a hard complaint rate puts on its sends until an operator lifts it.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "brand_guard_signals",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("workspace_id", sa.String(36), sa.ForeignKey("workspaces.id"), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("level", sa.String(10), nullable=False),
        sa.Column("rate", sa.Double(), nullable=False),
        sa.Column("sends", sa.Integer(), nullable=False),
        sa.Column("events", sa.Integer(), nullable=False),
        sa.Column("window_days", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lifted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lifted_by", sa.String(12), nullable=True),
        sa.Column("lift_note", sa.Text(), nullable=True),
    )
    op.create_index(
        "ix_brand_guard_open",
        "brand_guard_signals",
        ["workspace_id", "kind", "level", "lifted_at"],
    )


def downgrade() -> None:
    op.drop_index("ix_brand_guard_open", table_name="brand_guard_signals")
    op.drop_table("brand_guard_signals")
