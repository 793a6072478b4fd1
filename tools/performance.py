"""Seed 001's performance summary: its `email_agent_performance` view (a migration creates it)
and its "Target Metrics", measured per workspace from the audit trail."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Float, case, cast, column, func, select, table
from sqlalchemy.sql.elements import ColumnElement

from persistence import DeliveryAttempt, EmailExecution, EmailMetrics, ExecutionStatus
from tools.boundary import tool_function
from tools.runtime import get_runtime
from tools.schemas import WorkspaceArgs

# The view, as a query sees it (not in the ORM's metadata: Alembic created it, as SQL).
PERFORMANCE_VIEW = table(
    "email_agent_performance",
    column("workspace_id"),
    column("provider"),
    column("total_emails"),
    column("successful_sends"),
    column("success_rate"),
)
# Seed 001's targets: (which way is good, the bound).
TARGETS = {
    "sending_success_rate_percent": (">", 95.0),
    "avg_retries_per_email": ("<", 0.5),
    "provider_response_ms": ("<", 2000.0),
    "metrics_collection_latency_minutes": ("<", 30.0),
}
_IN_FLIGHT = (ExecutionStatus.QUEUED, ExecutionStatus.SCHEDULED, ExecutionStatus.SENDING)


@tool_function(WorkspaceArgs)
def provider_performance(args: WorkspaceArgs) -> dict[str, Any]:
    """`providers`: the view's rows for this workspace (provider, total_emails, successful_sends,
    success_rate as a percentage), each provider counted over the emails it was tried with;
    `targets`: seed 001's target metrics, each `{value, target, met}` (value None while there
    is nothing to measure). Circuit validation time is not among them: the audit trail does
    not record how long a validation took."""
    view = PERFORMANCE_VIEW.c
    with get_runtime().read_sessions() as session:
        rows = session.execute(
            select(view.provider, view.total_emails, view.successful_sends, view.success_rate)
            .where(view.workspace_id == args.workspace_id)
            .order_by(view.provider)
        ).all()
        measured = _measured(session, args.workspace_id)
    return {
        "success": True,
        "workspace_id": args.workspace_id,
        "providers": [
            {
                "provider": provider,
                "total_emails": int(total),
                "successful_sends": int(successful),
                "success_rate": float(rate),
            }
            for provider, total, successful, rate in rows
        ],
        "targets": {name: _judged(name, value) for name, value in measured.items()},
    }


def _measured(session: Any, workspace_id: str) -> dict[str, float | None]:
    ex, at, me = EmailExecution, DeliveryAttempt, EmailMetrics
    handed = [ex.workspace_id == workspace_id, ex.attempt_number > 0]
    finished = [*handed, ex.status.not_in(_IN_FLIGHT)]
    sent_share = func.avg(case((ex.sent, 100.0), else_=0.0))
    latency = _seconds(session, ex.sent_at, me.collected_at)
    return {
        "sending_success_rate_percent": session.scalar(select(sent_share).where(*finished)),
        "avg_retries_per_email": session.scalar(
            select(func.avg(cast(ex.retry_count, Float))).where(*handed)
        ),
        "provider_response_ms": session.scalar(
            select(func.avg(at.latency_ms)).where(at.workspace_id == workspace_id)
        ),
        "metrics_collection_latency_minutes": _minutes(
            session.scalar(
                select(func.avg(latency))
                .select_from(me)
                .join(ex, ex.id == me.execution_id)
                .where(me.workspace_id == workspace_id, me.collected_at.is_not(None))
            )
        ),
    }


def _seconds(session: Any, start: Any, end: Any) -> ColumnElement[float]:
    """`end - start` in seconds, in the SQL of the session's database."""
    if session.get_bind().dialect.name == "postgresql":
        return func.extract("epoch", end - start)
    return (func.julianday(end) - func.julianday(start)) * 86400.0


def _minutes(seconds: float | None) -> float | None:
    return None if seconds is None else float(seconds) / 60


def _judged(name: str, value: float | None) -> dict[str, Any]:
    way, bound = TARGETS[name]
    met = None if value is None else (value > bound if way == ">" else value < bound)
    shown = None if value is None else round(float(value), 3)
    return {"value": shown, "target": f"{way} {bound:g}", "met": met}
