"""Seed 001's CRM context: what the CRM knows of a recipient and the client a send is for.

Read from Unite-Hub's tables (`persistence/models.py`), each query filtered by workspace, in a
read-only transaction (`runtime.reader`: PostgreSQL begins it `READ ONLY`, SQLite turns on
`query_only`), so nothing on this path can write. The context informs the group chat and the
audit trail (a snapshot is stored with each accepted send); it never changes what is sent.

The shape is seed 001's `CRMContext`: a field the CRM has no value for is left out.
- `lead_stage`, `last_contacted_at`: the contact with the recipient's address (any case; the
  most recently contacted if the CRM holds several);
- `service_category`, `location`: the organization whose id is the send's `client_id`;
- `historical_engagement`: the numeric figures of that client's newest campaign;
- `brand_rules`: the workspace's profile in `synthex_tenant_profiles`.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, func, select

from persistence import Campaign, Contact, Organization, TenantProfile
from tools.boundary import tool_function
from tools.runtime import Runtime, get_runtime
from tools.schemas import CrmContextArgs


@tool_function(CrmContextArgs)
def get_crm_context(args: CrmContextArgs) -> dict[str, Any]:
    """What the CRM knows of `recipient` (and of the client `client_id`, when given), as seed
    001's CRMContext: `{success, workspace_id, recipient, client_id, crm_context}`. Read only;
    an unknown recipient or client gives an empty context, not an error."""
    context = crm_snapshot(get_runtime(), args.workspace_id, args.recipient, args.client_id)
    return {
        "success": True,
        "workspace_id": args.workspace_id,
        "recipient": args.recipient,
        "client_id": args.client_id,
        "crm_context": context,
    }


def crm_snapshot(
    runtime: Runtime, workspace_id: str, recipient: str, client_id: str | None
) -> dict[str, Any]:
    """The CRMContext of one send, read in a read-only transaction of its own (rolled back:
    it has nothing to commit)."""
    with runtime.reader.connect() as conn:
        return read_crm_context(conn, workspace_id, recipient, client_id)


def read_crm_context(
    conn: Connection, workspace_id: str, recipient: str, client_id: str | None
) -> dict[str, Any]:
    """The CRMContext (see the module's note) read on `conn`."""
    context: dict[str, Any] = {}
    contact = conn.execute(
        select(Contact.lead_stage, Contact.last_contacted_at)
        .where(Contact.workspace_id == workspace_id, func.lower(Contact.email) == recipient.lower())
        .order_by(Contact.last_contacted_at.is_(None), Contact.last_contacted_at.desc())
        .limit(1)
    ).first()
    if contact is not None:
        _put(context, "lead_stage", contact.lead_stage)
        if contact.last_contacted_at is not None:
            context["last_contacted_at"] = contact.last_contacted_at.isoformat()
    if client_id is not None:
        _put_client(conn, context, workspace_id, client_id)
    brand_rules = conn.scalar(
        select(TenantProfile.brand_rules).where(TenantProfile.workspace_id == workspace_id)
    )
    if isinstance(brand_rules, dict) and brand_rules:
        context["brand_rules"] = brand_rules
    return context


def _put_client(conn: Connection, context: dict[str, Any], workspace_id: str, client: str) -> None:
    organization = conn.execute(
        select(Organization.service_category, Organization.location).where(
            Organization.workspace_id == workspace_id, Organization.id == client
        )
    ).first()
    if organization is not None:
        _put(context, "service_category", organization.service_category)
        _put(context, "location", organization.location)
    engagement = conn.scalar(
        select(Campaign.historical_engagement)
        .where(Campaign.workspace_id == workspace_id, Campaign.organization_id == client)
        .order_by(Campaign.started_at.is_(None), Campaign.started_at.desc())
        .limit(1)
    )
    # Record<string, number>: the CRM is another system's, so what is not a number is left out.
    if isinstance(engagement, dict):
        figures = {
            name: value
            for name, value in engagement.items()
            if isinstance(value, int | float) and not isinstance(value, bool)
        }
        if figures:
            context["historical_engagement"] = figures


def _put(context: dict[str, Any], name: str, value: str | None) -> None:
    if value:
        context[name] = value
