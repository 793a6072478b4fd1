"""CX07 engagement evaluation ("On Sending Success: optional trigger"): a deterministic reading
of one sent email's engagement against its workspace's recent rates, logged as the email's CX07
circuit result so the audit trail keeps it beside CX01-CX06 and CX08.

The rules, in order: a bounce, a complaint or an unsubscribe is `negative`; a click or an open
is `engaged`, `above_baseline` when the workspace's recent rate of that same signal is under
half (this email did what most do not); nothing yet is `pending` for two days after the send,
then `no_response`. No model takes part.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from persistence import CircuitExecutionLog, EmailExecution, EmailMetrics
from tools import clock
from tools.boundary import not_found_failure, tool_function
from tools.errors import ErrorCode, ToolFailure
from tools.runtime import get_runtime
from tools.schemas import EvaluateEngagementArgs

CX07 = "CX07_ENGAGEMENT_EVALUATION"
BASELINE_DAYS = 30
PENDING_FOR = timedelta(days=2)
NEGATIVE = ("bounced", "complained", "unsubscribed")
POSITIVE = ("clicked", "opened")  # the stronger first


@tool_function(EvaluateEngagementArgs, on_failure=not_found_failure)
def evaluate_engagement(args: EvaluateEngagementArgs) -> dict[str, Any]:
    """Evaluate one sent email of the workspace and log the result as its CX07 circuit run:
    `{email_id, verdict, signals, baseline, log_id}`; `verdict` is negative, engaged,
    above_baseline, pending or no_response (see the module's rules); `baseline`: the
    workspace's rates over its sends of the last 30 days."""
    now = clock.utcnow()
    with get_runtime().sessions.begin() as session:
        execution = session.get(EmailExecution, args.email_id)
        if execution is None or execution.workspace_id != args.workspace_id:
            raise ToolFailure(ErrorCode.NOT_FOUND, "no such email in this workspace")
        if not execution.sent:
            raise ToolFailure(
                ErrorCode.INVALID_INPUT, f"this email is {execution.status}: CX07 needs a sent one"
            )
        metrics = session.scalars(
            select(EmailMetrics).where(EmailMetrics.execution_id == execution.id)
        ).first()
        signals = {
            name: bool(metrics and getattr(metrics, name)) for name in (*NEGATIVE, *POSITIVE)
        }
        baseline = _baseline(session, execution, now)
        verdict = _verdict(signals, baseline, now - execution.sent_at)
        output = {
            "email_id": execution.id,
            "verdict": verdict,
            "signals": signals,
            "baseline": baseline,
        }
        log = CircuitExecutionLog(
            id=str(uuid.uuid4()),
            workspace_id=execution.workspace_id,
            circuit_execution_id=execution.circuit_execution_id,
            circuit_id=CX07,
            success=verdict != "negative",
            output=output,
            created_at=now,
        )
        session.add(log)
    return {"success": True, **output, "log_id": log.id}


def _baseline(session: Session, execution: EmailExecution, now: Any) -> dict[str, Any]:
    """The workspace's rates over its other sends of the last 30 days."""
    me, ex = EmailMetrics, EmailExecution
    rates = [func.avg(case((getattr(me, name), 1.0), else_=0.0)) for name in (*NEGATIVE, *POSITIVE)]
    row = session.execute(
        select(func.count(), *rates)
        .select_from(me)
        .join(ex, ex.id == me.execution_id)
        .where(
            me.workspace_id == execution.workspace_id,
            me.execution_id != execution.id,
            ex.sent_at >= now - timedelta(days=BASELINE_DAYS),
        )
    ).one()
    sends, *values = row
    return {
        "days": BASELINE_DAYS,
        "sends": sends,
        **{
            f"{name}_rate": round(float(value or 0.0), 4)
            for name, value in zip((*NEGATIVE, *POSITIVE), values, strict=True)
        },
    }


def _verdict(signals: dict[str, bool], baseline: dict[str, Any], since_sent: timedelta) -> str:
    if any(signals[name] for name in NEGATIVE):
        return "negative"
    for name in POSITIVE:
        if signals[name]:
            return "above_baseline" if baseline[f"{name}_rate"] < 0.5 else "engaged"
    return "pending" if since_sent < PENDING_FOR else "no_response"


def evaluate_collected(workspace_id: str, limit: int = 500) -> int:
    """Evaluate the workspace's sent emails whose engagement changed since their last CX07
    run (an event was collected after it, or they never had one), at most `limit`; how many."""
    me, log = EmailMetrics, CircuitExecutionLog
    last_run = (
        select(func.max(log.created_at))
        .where(
            log.workspace_id == workspace_id,
            log.circuit_id == CX07,
            log.output["email_id"].as_string() == me.execution_id,
        )
        .scalar_subquery()
    )
    with get_runtime().read_sessions() as session:
        due = session.scalars(
            select(me.execution_id)
            .where(
                me.workspace_id == workspace_id,
                me.collected_at.is_not(None),
                (last_run.is_(None)) | (last_run < me.collected_at),
            )
            .order_by(me.collected_at)
            .limit(limit)
        ).all()
    for email_id in due:
        evaluate_engagement(workspace_id, email_id)
    return len(due)
