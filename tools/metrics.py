"""Read-only reports over the audit trail: engagement per circuit execution, sending history,
and how each provider performs. Every query is filtered by workspace."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import case, func, select

from persistence import AttemptOutcome, DeliveryAttempt, EmailExecution, EmailMetrics
from persistence.models import ProviderBreaker
from tools import clock
from tools.addresses import address_key
from tools.boundary import tool_function
from tools.clock import iso
from tools.runtime import get_runtime
from tools.schemas import (
    EngagementMetricsArgs,
    ProviderHealthArgs,
    SendHistoryArgs,
)
from tools.status import ENGAGEMENT, engagement_dict


@tool_function(EngagementMetricsArgs)
def get_engagement_metrics(args: EngagementMetricsArgs) -> dict[str, Any]:
    """Engagement of the emails one circuit execution sent (seed 001's metrics shape).

    `metrics` says whether any of them was delivered, opened, ...; `emails` has each one's.
    """
    with get_runtime().read_sessions() as session:
        rows = session.execute(
            select(EmailExecution, EmailMetrics)
            .join(EmailMetrics, EmailMetrics.execution_id == EmailExecution.id, isouter=True)
            .where(
                EmailExecution.workspace_id == args.workspace_id,
                EmailExecution.circuit_execution_id == args.circuit_execution_id,
            )
            .order_by(EmailExecution.created_at)
        ).all()
    emails = [
        {
            "email_id": execution.id,
            "recipient": execution.recipient,
            "status": execution.status,
            "engagement": engagement_dict(metrics),
        }
        for execution, metrics in rows
    ]
    found = [metrics for _, metrics in rows if metrics is not None]
    return {
        "success": True,
        "workspace_id": args.workspace_id,
        "circuit_execution_id": args.circuit_execution_id,
        "metrics": {name: any(getattr(m, name) for m in found) for name in ENGAGEMENT},
        "metrics_count": len(found),
        "emails": emails,
    }


@tool_function(SendHistoryArgs)
def get_send_history(args: SendHistoryArgs) -> dict[str, Any]:
    """The workspace's sends, newest first, narrowed by any of: client, recipient, status,
    circuit execution, provider, and creation time (`created_since` <= t < `created_before`).

    Paged by `limit` (1-500) and `offset`; `total_count` counts every match.
    """
    filters = _history_filters(args)
    with get_runtime().read_sessions() as session:
        total = session.scalar(select(func.count()).select_from(EmailExecution).where(*filters))
        rows = session.execute(
            select(EmailExecution, EmailMetrics)
            .join(EmailMetrics, EmailMetrics.execution_id == EmailExecution.id, isouter=True)
            .where(*filters)
            .order_by(EmailExecution.created_at.desc(), EmailExecution.id)
            .limit(args.limit)
            .offset(args.offset)
        ).all()
    return {
        "success": True,
        "workspace_id": args.workspace_id,
        "executions": [
            {
                "email_id": execution.id,
                "circuit_execution_id": execution.circuit_execution_id,
                "client_id": execution.client_id,
                "recipient": execution.recipient,
                "subject": execution.subject,
                "status": execution.status,
                "sent": execution.sent,
                "sent_at": iso(execution.sent_at),
                "provider": execution.provider,
                "created_at": iso(execution.created_at),
                "engagement_metrics": engagement_dict(metrics),
            }
            for execution, metrics in rows
        ],
        "total_count": total or 0,
        "limit": args.limit,
        "offset": args.offset,
    }


def _history_filters(args: SendHistoryArgs) -> list[Any]:
    ex = EmailExecution
    wanted = [
        (ex.client_id, args.client_id),
        (ex.recipient_key, address_key(args.recipient, "recipient") if args.recipient else None),
        (ex.status, args.status),
        (ex.circuit_execution_id, args.circuit_execution_id),
        (ex.provider, args.provider),
    ]
    filters = [ex.workspace_id == args.workspace_id]
    filters += [column == value for column, value in wanted if value is not None]
    if args.created_since is not None:
        filters.append(ex.created_at >= args.created_since)
    if args.created_before is not None:
        filters.append(ex.created_at < args.created_before)
    return filters


@tool_function(ProviderHealthArgs)
def provider_health(args: ProviderHealthArgs) -> dict[str, Any]:
    """Each provider, in the chain's order (and any other one with a breaker or attempts): its
    circuit breaker (shared by every workspace: `closed` or `open`, until when, failures in
    the window), and this workspace's attempts with it over the last `window_minutes`:
    attempts, sent, success rate, mean and slowest latency."""
    runtime = get_runtime()
    since = clock.utcnow() - timedelta(minutes=args.window_minutes)
    at = DeliveryAttempt
    sent = case((at.outcome == AttemptOutcome.SENT, 1), else_=0)
    per_provider = (
        select(
            at.provider,
            func.count(),
            func.sum(sent),
            func.avg(at.latency_ms),
            func.max(at.latency_ms),
        )
        .where(at.workspace_id == args.workspace_id, at.created_at >= since)
        .group_by(at.provider)
    )
    with runtime.read_sessions() as session:
        breakers = {row.provider: row for row in session.scalars(select(ProviderBreaker))}
        recent = {row[0]: tuple(row[1:]) for row in session.execute(per_provider)}
    names = list(dict.fromkeys([*runtime.delivery.names, *breakers, *recent]))
    return {
        "success": True,
        "workspace_id": args.workspace_id,
        "window_minutes": args.window_minutes,
        "providers": [
            _health_of(name, name in runtime.delivery.names, breakers.get(name), recent.get(name))
            for name in names
        ],
    }


def _health_of(
    name: str, configured: bool, breaker: ProviderBreaker | None, recent: tuple | None
) -> dict[str, Any]:
    attempts, delivered, latency, slowest = recent or (0, 0, None, None)
    delivered = int(delivered or 0)
    return {
        "provider": name,
        "configured": configured,
        "breaker": {
            "state": breaker.state if breaker else "closed",
            "open_until": iso(breaker.open_until) if breaker else None,
            "failures": breaker.failures if breaker else 0,
        },
        "recent": {
            "attempts": attempts,
            "sent": delivered,
            "success_rate": round(delivered / attempts, 4) if attempts else None,
            "avg_latency_ms": None if latency is None else round(float(latency), 1),
            "max_latency_ms": None if slowest is None else round(float(slowest), 1),
        },
    }
