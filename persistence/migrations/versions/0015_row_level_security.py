"""Row-level security on PostgreSQL (seed 001, "Multi-tenant isolation, RLS"): every table
holding a workspace's rows shows, and lets a statement write, only the rows of the
transaction's `app.workspace_id`, or every row when it is `*` (`persistence/tenancy.py`).
Unset, nothing is visible: a query that forgets its workspace filter sees no one's rows.

FORCE applies the policies to the tables' owner too, so an application that connects as the
owner is held to them. Superusers and roles with BYPASSRLS are not: the application must not
connect as one. The performance view reads its table with the querying role's rights
(`security_invoker`, PostgreSQL 15), so it is filtered the same way.

SQLite has no row-level security; this migration does nothing there.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-03
"""

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

# Each table with the column naming its workspace.
TENANT_TABLES = {
    "workspaces": "id",
    "circuit_execution_logs": "workspace_id",
    "email_agent_executions": "workspace_id",
    "email_delivery_attempts": "workspace_id",
    "sent_messages": "workspace_id",
    "email_agent_metrics": "workspace_id",
    "email_suppression_list": "workspace_id",
    "brand_guard_signals": "workspace_id",
    "operator_actions": "workspace_id",
    "provider_events": "workspace_id",
    "self_correction_actions": "workspace_id",
    "agent_transcripts": "workspace_id",
    "contacts": "workspace_id",
    "organizations": "workspace_id",
    "campaigns": "workspace_id",
    "synthex_tenant_profiles": "workspace_id",
}
POLICY = "workspace_isolation"
# `current_setting(..., true)` is NULL or '' when unset: then no row matches.
_VISIBLE = (
    "{column} = current_setting('app.workspace_id', true)"
    " OR current_setting('app.workspace_id', true) = '*'"
)


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, column in TENANT_TABLES.items():
        visible = _VISIBLE.format(column=column)
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
        op.execute(f"CREATE POLICY {POLICY} ON {table} USING ({visible}) WITH CHECK ({visible})")
    if op.get_bind().dialect.server_version_info >= (15,):
        op.execute("ALTER VIEW email_agent_performance SET (security_invoker = true)")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    if op.get_bind().dialect.server_version_info >= (15,):
        op.execute("ALTER VIEW email_agent_performance RESET (security_invoker)")
    for table in TENANT_TABLES:
        op.execute(f"DROP POLICY {POLICY} ON {table}")
        op.execute(f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")
