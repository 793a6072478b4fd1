"""Indexes for the send path: a covering index for the hourly count; three unused ones gone.

Every send reads the workspace's last hour and writes one row. The hourly count now comes from
the index alone. The single-column indexes on workspace_id and circuit_execution_id repeat the
prefix of the unique (workspace, execution, recipient) index, and no query orders or filters
by sent_at; each cost every send an index write.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-21
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("email_agent_executions", schema=None) as batch_op:
        batch_op.drop_index("ix_executions_rate_window")
        batch_op.create_index(
            "ix_executions_rate_window", ["workspace_id", "reserved_at", "recipient_count"]
        )
        batch_op.drop_index("ix_email_agent_executions_workspace_id")
        batch_op.drop_index("ix_email_agent_executions_circuit_execution_id")
        batch_op.drop_index("ix_email_agent_executions_sent_at")


def downgrade() -> None:
    with op.batch_alter_table("email_agent_executions", schema=None) as batch_op:
        batch_op.create_index("ix_email_agent_executions_sent_at", ["sent_at"])
        batch_op.create_index(
            "ix_email_agent_executions_circuit_execution_id", ["circuit_execution_id"]
        )
        batch_op.create_index("ix_email_agent_executions_workspace_id", ["workspace_id"])
        batch_op.drop_index("ix_executions_rate_window")
        batch_op.create_index("ix_executions_rate_window", ["workspace_id", "reserved_at"])
