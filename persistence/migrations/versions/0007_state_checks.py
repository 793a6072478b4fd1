"""CHECK constraints holding each stored state to its values (persistence/states.py).

An execution's status, an attempt's outcome and a CX08 action were free text: a typo in code
would have written a state no query looks for. The values are listed here as they were at
this revision (a later state gets a migration of its own). `failed`, documented once as the
status of a total failure but never written, is not among them: CX08 always turns a total
failure into `scheduled` or `escalated`.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

CHECKS = {
    "email_agent_executions": (
        "ck_execution_status",
        "status",
        ("scheduled", "sending", "sent", "blocked", "escalated"),
    ),
    "email_delivery_attempts": (
        "ck_attempt_outcome",
        "outcome",
        ("sent", "transient_error", "permanent_error", "ambiguous"),
    ),
    "self_correction_actions": (
        "ck_correction_action",
        "action",
        ("reschedule", "escalate", "open_breaker", "reopen_breaker", "close_breaker"),
    ),
}


def upgrade() -> None:
    for table, (name, column, values) in CHECKS.items():
        listed = ", ".join(f"'{value}'" for value in values)
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.create_check_constraint(name, f"{column} IN ({listed})")


def downgrade() -> None:
    for table, (name, _, _) in CHECKS.items():
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_constraint(name, type_="check")
