"""Seed 001's `email_agent_performance` view ("Query Performance Summary"): per workspace and
provider, the emails that provider was tried with, those it sent, and the success rate as a
percentage. Counted from the attempts, so a provider that failed before another sent the
email shows that failure (by the executions' final provider it would not).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03
"""

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

# Portable SQL: SQLite and PostgreSQL read it alike.
VIEW = """
CREATE VIEW email_agent_performance AS
SELECT
    workspace_id,
    provider,
    COUNT(DISTINCT execution_id) AS total_emails,
    COUNT(DISTINCT CASE WHEN outcome = 'sent' THEN execution_id END) AS successful_sends,
    ROUND(
        100.0 * COUNT(DISTINCT CASE WHEN outcome = 'sent' THEN execution_id END)
        / COUNT(DISTINCT execution_id),
        2
    ) AS success_rate
FROM email_delivery_attempts
GROUP BY workspace_id, provider
"""


def upgrade() -> None:
    op.execute(VIEW)


def downgrade() -> None:
    op.execute("DROP VIEW email_agent_performance")
