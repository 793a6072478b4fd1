"""Delivery status of one email, from the audit trail."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from persistence import DeliveryAttempt, EmailExecution, EmailMetrics
from tools.clock import iso
from tools.errors import ToolFailure, email_not_found
from tools.runtime import get_runtime
from tools.schemas import GetEmailStatusArgs, parse
from tools.self_correction import actions_for

ENGAGEMENT = ("delivered", "bounced", "opened", "clicked", "unsubscribed", "complained")


def engagement_dict(metrics: EmailMetrics | None) -> dict[str, Any] | None:
    if metrics is None:
        return None
    result: dict[str, Any] = {name: getattr(metrics, name) for name in ENGAGEMENT}
    result["bounce_type"] = metrics.bounce_type
    result["collected_at"] = metrics.collected_at.isoformat() if metrics.collected_at else None
    for name in ENGAGEMENT:
        at = getattr(metrics, f"{name}_at")
        result[f"{name}_at"] = at.isoformat() if at else None
    return result


def get_email_status(email_id: str, workspace_id: str | None = None) -> dict[str, Any]:
    """Status, provider, attempts, last error, engagement and CX08 decisions of one email.

    With `workspace_id`, an email of another workspace is reported as not found.
    """
    runtime = get_runtime()
    arguments = {"email_id": email_id, "workspace_id": workspace_id}
    try:
        args = parse(GetEmailStatusArgs, arguments)
    except ToolFailure as failure:
        return email_not_found(email_id, failure)
    with runtime.sessions() as session:
        row = session.get(EmailExecution, args.email_id)
        if row is None or (args.workspace_id is not None and row.workspace_id != args.workspace_id):
            return email_not_found(args.email_id)
        attempts = session.scalar(
            select(func.count()).where(DeliveryAttempt.execution_id == row.id)
        )
        metrics = session.scalars(
            select(EmailMetrics).where(EmailMetrics.execution_id == row.id)
        ).first()
        corrections = actions_for(session.connection(), row.id)
    return {
        "email_id": row.id,
        "found": True,
        "status": row.status,
        "workspace_id": row.workspace_id,
        "circuit_execution_id": row.circuit_execution_id,
        "recipient": row.recipient,
        "subject": row.subject,
        "provider": row.provider,
        "provider_message_id": row.provider_message_id,
        "sent_at": iso(row.sent_at),
        "scheduled_for": iso(row.scheduled_for),
        "last_updated": iso(row.updated_at),
        "delivery_attempts": attempts or 0,
        "retry_count": row.retry_count,
        "last_error": row.last_error,
        "error_code": row.error_code,
        "engagement": engagement_dict(metrics),
        "self_corrections": corrections,
    }
