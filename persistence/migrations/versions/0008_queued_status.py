"""The `queued` status: a send accepted with every check passed, waiting for a worker.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_BEFORE = ("scheduled", "sending", "sent", "blocked", "escalated")
_AFTER = ("scheduled", "queued", "sending", "sent", "blocked", "escalated")


def _check(statuses: tuple[str, ...]) -> None:
    listed = ", ".join(f"'{status}'" for status in statuses)
    with op.batch_alter_table("email_agent_executions", schema=None) as batch_op:
        batch_op.drop_constraint("ck_execution_status", type_="check")
        batch_op.create_check_constraint("ck_execution_status", f"status IN ({listed})")


def upgrade() -> None:
    _check(_AFTER)


def downgrade() -> None:
    _check(_BEFORE)
