"""Seed 001's CRM context: the brand rules' table under the seed's name
(`synthex_tenant_profiles`), a campaign's client and start, the index a contact is found by
(address, any case), and each execution's snapshot of what the CRM knew when it was accepted.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.rename_table("tenant_profiles", "synthex_tenant_profiles")
    with op.batch_alter_table("campaigns") as batch:
        batch.add_column(sa.Column("organization_id", sa.String(36), nullable=True))
        batch.add_column(sa.Column("started_at", sa.DateTime(timezone=True), nullable=True))
        batch.create_foreign_key(
            "fk_campaigns_organization", "organizations", ["organization_id"], ["id"]
        )
    op.create_index(
        "ix_campaigns_client", "campaigns", ["workspace_id", "organization_id", "started_at"]
    )
    op.create_index("ix_contacts_address", "contacts", ["workspace_id", sa.text("lower(email)")])
    with op.batch_alter_table("email_agent_executions") as batch:
        batch.add_column(sa.Column("crm_context", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("email_agent_executions") as batch:
        batch.drop_column("crm_context")
    op.drop_index("ix_contacts_address", "contacts")
    op.drop_index("ix_campaigns_client", "campaigns")
    with op.batch_alter_table("campaigns") as batch:
        batch.drop_constraint("fk_campaigns_organization", type_="foreignkey")
        batch.drop_column("started_at")
        batch.drop_column("organization_id")
    op.rename_table("synthex_tenant_profiles", "tenant_profiles")
