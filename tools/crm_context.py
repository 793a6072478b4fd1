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

from sqlalchemy import Connection, bindparam, func, select

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
    """The CRMContext (see the module's note) read on `conn`, in one statement."""
    found = conn.execute(
        _CONTEXT, {"workspace_id": workspace_id, "address": recipient, "client": client_id}
    ).one()
    context: dict[str, Any] = {
        name: getattr(found, name)
        for name in ("lead_stage", "service_category", "location")
        if getattr(found, name)
    }
    if found.last_contacted_at is not None:
        context["last_contacted_at"] = found.last_contacted_at.isoformat()
    figures = _numbers(found.historical_engagement)
    if figures:
        context["historical_engagement"] = figures
    if isinstance(found.brand_rules, dict) and found.brand_rules:
        context["brand_rules"] = found.brand_rules
    return context


def _numbers(engagement: Any) -> dict[str, float]:
    """Record<string, number>: the CRM is another system's, so what is not a number is left
    out."""
    if not isinstance(engagement, dict):
        return {}
    return {
        name: value
        for name, value in engagement.items()
        if isinstance(value, int | float) and not isinstance(value, bool)
    }


def _contact(column: Any) -> Any:
    return (
        select(column)
        .where(
            Contact.workspace_id == bindparam("workspace_id"),
            # Lower-cased by the database on both sides, so they agree on any letter.
            Contact.email_key == func.lower(bindparam("address")),
        )
        .order_by(Contact.last_contacted_at.is_(None), Contact.last_contacted_at.desc())
        .limit(1)
        .scalar_subquery()
    )


def _client(column: Any) -> Any:
    return (
        select(column)
        .where(
            Organization.workspace_id == bindparam("workspace_id"),
            Organization.id == bindparam("client"),
        )
        .scalar_subquery()
    )


# One statement, built once: it is read for every send. As four queries built per call it took
# 2.2 ms per send on PostgreSQL here, as this one 1.0 ms (most of it the read-only
# transaction's own round trips); see the closing figures of bench/serve_latency.py.
_CONTEXT = select(
    _contact(Contact.lead_stage).label("lead_stage"),
    _contact(Contact.last_contacted_at).label("last_contacted_at"),
    _client(Organization.service_category).label("service_category"),
    _client(Organization.location).label("location"),
    select(Campaign.historical_engagement)
    .where(
        Campaign.workspace_id == bindparam("workspace_id"),
        Campaign.organization_id == bindparam("client"),
    )
    .order_by(Campaign.started_at.is_(None), Campaign.started_at.desc())
    .limit(1)
    .scalar_subquery()
    .label("historical_engagement"),
    select(TenantProfile.brand_rules)
    .where(TenantProfile.workspace_id == bindparam("workspace_id"))
    .scalar_subquery()
    .label("brand_rules"),
)
