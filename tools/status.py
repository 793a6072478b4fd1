"""Delivery status of one email, from the audit trail."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from persistence import DeliveryAttempt, EmailExecution, EmailMetrics, scope_of
from tools.boundary import not_found_failure, tool_function
from tools.clock import iso
from tools.correction_log import actions_for
from tools.errors import ErrorCode, ToolFailure
from tools.runtime import get_runtime
from tools.schemas import GetEmailStatusArgs

ENGAGEMENT = ("delivered", "bounced", "opened", "clicked", "unsubscribed", "complained")


def load_execution(email_id: str) -> EmailExecution:
    """The execution row of an `email_id` known to exist (in the caller's workspace scope)."""
    with get_runtime().read_sessions() as session:
        row = session.get(EmailExecution, email_id)
    assert row is not None, f"no execution {email_id}"
    return row


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


@tool_function(GetEmailStatusArgs, on_failure=not_found_failure)
def get_email_status(args: GetEmailStatusArgs) -> dict[str, Any]:
    """Status, provider, attempts, last error, engagement and CX08 decisions of one email.

    With `workspace_id`, an email of another workspace is reported as not found; without it,
    the email is looked for in every workspace.
    """
    with scope_of(args.workspace_id), get_runtime().read_sessions() as session:
        row = session.get(EmailExecution, args.email_id)
        if row is None or args.workspace_id not in (None, row.workspace_id):
            raise ToolFailure(ErrorCode.NOT_FOUND, "no such email")
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
