"""A workspace at a glance, for the console's first page: its sends of the last 24 hours hour
by hour and status by status, this hour's use of its limit, what waits for a person, and its
providers' health."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import case, func, select

from persistence import EmailExecution, ExecutionStatus, Workspace
from tools import clock
from tools.boundary import tool_function
from tools.clock import iso
from tools.errors import ErrorCode, ToolFailure
from tools.metrics import provider_health
from tools.operator_actions import list_escalations
from tools.runtime import get_runtime
from tools.schemas import WorkspaceArgs

HOURS = 24


@tool_function(WorkspaceArgs)
def get_workspace_overview(args: WorkspaceArgs) -> dict[str, Any]:
    """`hours`: the last 24 hours, oldest first, each `{start, counts: {status: n}}` of the
    sends created in it; `totals` by status; `hourly_limit`: `{used, limit}` as the limit
    counts them (recipients whose send took its slot in the last hour); `escalations_waiting`
    (not acknowledged); `providers` as `provider_health` gives them."""
    runtime = get_runtime()
    now = clock.utcnow()
    # Whole hours, so that a page drawn a minute later shows the same bars.
    starts = [
        now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=HOURS - 1 - i)
        for i in range(HOURS)
    ]
    with runtime.read_sessions() as session:
        workspace = session.get(Workspace, args.workspace_id)
        if workspace is None:
            raise ToolFailure(ErrorCode.UNKNOWN_WORKSPACE, "no such workspace")
        per_hour = _sends_per_hour(session, args.workspace_id, starts)
        used = _recipients_in_last_hour(session, args.workspace_id, now)
    limit = workspace.rate_limit_per_hour or runtime.settings.rate_limit_per_hour
    waiting = list_escalations(workspace_id=args.workspace_id, limit=1)["total_count"]
    hours = [
        {"start": iso(start), "counts": {status: per_hour[status][i] for status in per_hour}}
        for i, start in enumerate(starts)
    ]
    return {
        "success": True,
        "workspace_id": args.workspace_id,
        "workspace_name": workspace.name,
        "hours": hours,
        "totals": {status: sum(counts) for status, counts in per_hour.items()},
        "hourly_limit": {"used": used, "limit": limit},
        "escalations_waiting": waiting,
        "providers": provider_health(workspace_id=args.workspace_id)["providers"],
    }


def _sends_per_hour(session: Any, workspace_id: str, starts: list) -> dict[str, list[int]]:
    """Per status, the sends created in each hour: one query, one sum per hour (portable
    across SQLite and PostgreSQL, which truncate dates differently)."""
    ex = EmailExecution
    ends = [*starts[1:], starts[-1] + timedelta(hours=1)]
    sums = [
        func.sum(case(((ex.created_at >= start) & (ex.created_at < end), 1), else_=0))
        for start, end in zip(starts, ends, strict=True)
    ]
    rows = session.execute(
        select(ex.status, *sums)
        .where(ex.workspace_id == workspace_id, ex.created_at >= starts[0])
        .group_by(ex.status)
    ).all()
    per_hour = {status.value: [0] * len(starts) for status in ExecutionStatus}
    for status, *counts in rows:
        per_hour[ExecutionStatus(status).value] = [int(n or 0) for n in counts]
    return per_hour


def _recipients_in_last_hour(session: Any, workspace_id: str, now: Any) -> int:
    ex = EmailExecution
    used = session.scalar(
        select(func.coalesce(func.sum(ex.recipient_count), 0)).where(
            ex.workspace_id == workspace_id, ex.reserved_at >= now - timedelta(hours=1)
        )
    )
    return int(used or 0)
