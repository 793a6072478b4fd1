"""CX08 self-correction: what happens to a send that failed on every provider. Rules only; no
model is consulted.

- adjust timing: a first total failure is rescheduled once, after `reschedule_delay_seconds`;
  it then goes through every check again;
- escalate: a second total failure, or a hand-over that went unanswered (it may have been
  delivered, so it is never retried), gets status `escalated` for an operator.

The other two CX08 rules live beside it: switching providers (`tools/breakers.py`) and
escalating sends whose outcome was never recorded (`tools/stalled_sends.py`). Every decision is
logged with its inputs and reason (`tools/correction_log.py`); `self_correct` reports them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, select

from persistence import CorrectionAction, EmailExecution, ExecutionStatus, scope_of
from settings import Settings
from tools.boundary import not_found_failure, tool_function
from tools.clock import iso
from tools.correction_log import actions_for, attempt_summary, log_action
from tools.errors import ErrorCode, ToolFailure
from tools.providers.chain import DeliveryOutcome
from tools.runtime import get_runtime
from tools.schemas import SelfCorrectArgs

_DECISIONS = (CorrectionAction.RESCHEDULE, CorrectionAction.ESCALATE)
_UNANSWERED = (
    "the hand-over went unanswered, so the email may have been delivered; it is not sent "
    "again anywhere. An operator should check with the provider."
)
_FAILED_AGAIN = (
    "failed on every provider again after CX08 rescheduled it; an operator should look at "
    "the providers and the message"
)


@dataclass(frozen=True)
class Decision:
    """What CX08 did with a total failure: the execution's new status and why."""

    action: CorrectionAction  # reschedule | escalate
    status: ExecutionStatus  # scheduled | escalated
    reason: str
    scheduled_for: datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "reason": self.reason,
            "scheduled_for": iso(self.scheduled_for),
        }


def decide_after_failure(
    conn: Connection,
    settings: Settings,
    outcome: DeliveryOutcome,
    *,
    workspace_id: str,
    execution_id: str,
    reschedule_count: int,
    now: datetime,
) -> Decision:
    """Reschedule a first total failure, escalate a second or an unanswered hand-over; the
    decision is logged in `conn`'s transaction."""
    if outcome.ambiguous:
        decision = Decision(CorrectionAction.ESCALATE, ExecutionStatus.ESCALATED, _UNANSWERED)
    elif reschedule_count == 0:
        delay = timedelta(seconds=settings.reschedule_delay_seconds)
        decision = Decision(
            CorrectionAction.RESCHEDULE,
            ExecutionStatus.SCHEDULED,
            f"failed on every provider; rescheduled once, in {delay}",
            now + delay,
        )
    else:
        decision = Decision(CorrectionAction.ESCALATE, ExecutionStatus.ESCALATED, _FAILED_AGAIN)
    inputs = {
        "reschedule_count": reschedule_count,
        "ambiguous": outcome.ambiguous,
        "providers_skipped": outcome.skipped,
        "attempts": [attempt_summary(a) for a in outcome.attempts],
        "last_error": outcome.last_error,
        "scheduled_for": iso(decision.scheduled_for),
    }
    log_action(conn, workspace_id, execution_id, decision.action, decision.reason, inputs, now)
    return decision


@tool_function(SelfCorrectArgs, on_failure=not_found_failure)
def self_correct(args: SelfCorrectArgs) -> dict[str, Any]:
    """The CX08 decision for one email, for the SelfCorrectionAgent.

    The send pipeline applies the rules itself when a delivery fails; this reports what was
    decided (`action`: reschedule, escalate, or none when nothing failed), with the reason and
    every action taken for the email so far. With `workspace_id`, an email of another
    workspace is not found; without it, the email is looked for in every workspace.
    """
    with scope_of(args.workspace_id), get_runtime().reader.connect() as conn:
        row = conn.execute(
            select(
                EmailExecution.status,
                EmailExecution.workspace_id,
                EmailExecution.last_error,
                EmailExecution.scheduled_for,
            ).where(EmailExecution.id == args.email_id)
        ).first()
        if row is None or args.workspace_id not in (None, row.workspace_id):
            raise ToolFailure(ErrorCode.NOT_FOUND, "no such email")
        actions = actions_for(conn, args.email_id)
    decisions = [a for a in actions if a["action"] in _DECISIONS]
    latest = decisions[-1] if decisions else None
    return {
        "email_id": args.email_id,
        "found": True,
        "status": row.status,
        "action": latest["action"] if latest else "none",
        "reason": latest["reason"] if latest else f"no failure to correct (status {row.status})",
        "scheduled_for": iso(row.scheduled_for)
        if row.status is ExecutionStatus.SCHEDULED
        else None,
        "last_error": row.last_error,
        "actions": actions,
    }
