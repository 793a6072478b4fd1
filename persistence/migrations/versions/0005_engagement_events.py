"""Normalised webhook event fields, so events can be folded into metrics and linked later.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("provider_events", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("kind", sa.String(length=20), server_default="other", nullable=False)
        )
        batch_op.add_column(sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("bounce_type", sa.String(length=20), nullable=True))
        batch_op.add_column(sa.Column("recipient", sa.String(length=320), nullable=True))
        batch_op.add_column(sa.Column("email_ref", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("workspace_claim", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("provider_message_id", sa.String(length=400), nullable=True))
        batch_op.create_index(batch_op.f("ix_provider_events_email_ref"), ["email_ref"])
        batch_op.create_index(
            batch_op.f("ix_provider_events_provider_message_id"), ["provider_message_id"]
        )
        batch_op.create_index(
            "ix_provider_events_waiting",
            ["received_at"],
            postgresql_where=sa.text("execution_id IS NULL"),
            sqlite_where=sa.text("execution_id IS NULL"),
        )
    with op.batch_alter_table("email_agent_executions", schema=None) as batch_op:
        batch_op.create_index("ix_executions_provider_message", ["provider", "provider_message_id"])


def downgrade() -> None:
    with op.batch_alter_table("email_agent_executions", schema=None) as batch_op:
        batch_op.drop_index("ix_executions_provider_message")
    with op.batch_alter_table("provider_events", schema=None) as batch_op:
        batch_op.drop_index("ix_provider_events_waiting")
        batch_op.drop_index(batch_op.f("ix_provider_events_provider_message_id"))
        batch_op.drop_index(batch_op.f("ix_provider_events_email_ref"))
        for column in (
            "provider_message_id",
            "workspace_claim",
            "email_ref",
            "recipient",
            "bounce_type",
            "occurred_at",
            "kind",
        ):
            batch_op.drop_column(column)
