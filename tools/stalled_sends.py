"""The stalled-send sweep: a send still `sending` long after it was claimed is escalated.

Such a row outlived the process that was delivering it (killed, crashed, or unable to record
the outcome). Whether the provider took the message is unknown, so, like an unanswered
hand-over, it is escalated for an operator (`delivery_unconfirmed`) and never resent. The
bound, `stalled_send_seconds`, is held above the longest a delivery can take (see
`Settings.longest_delivery_seconds`), and a batch of stored sends starts no send that could
outlast it (`tools/send/due.py`), so a send still in progress is never swept. It is counted
from the claim (`updated_at` of a `sending` row), not from `reserved_at`: a queued send holds
its slot in the limits from its acceptance, however long it then waited for a worker.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import bindparam, select, update

from persistence import CorrectionAction, EmailExecution, ExecutionStatus, all_workspaces
from tools import clock
from tools.clock import iso
from tools.correction_log import log_action
from tools.errors import ErrorCode
from tools.runtime import get_runtime

_executions = EmailExecution.__table__

_STALLED = (
    select(_executions.c.id, _executions.c.workspace_id, _executions.c.updated_at)
    .where(
        _executions.c.status == ExecutionStatus.SENDING,
        _executions.c.updated_at < bindparam("cutoff"),
    )
    .order_by(_executions.c.updated_at, _executions.c.id)  # one lock order for all sweeps
    .limit(bindparam("limit"))
)
# Only a row still `sending`: a delivery that did finish after all keeps its own outcome, and
# of two workers sweeping at once only one escalates (and logs) each row.
_ESCALATE = (
    update(_executions)
    .where(_executions.c.id == bindparam("b_id"), _executions.c.status == ExecutionStatus.SENDING)
    .values(
        status=ExecutionStatus.ESCALATED,
        error_code=ErrorCode.DELIVERY_UNCONFIRMED.value,
        last_error=bindparam("last_error"),
        updated_at=bindparam("now"),
    )
)
REASON = (
    "the send's outcome was never recorded (the process stopped during delivery), so the "
    "email may have been delivered; it is not sent again anywhere. An operator should check "
    "with the provider."
)


@all_workspaces()  # the sweep looks after every workspace's sends
def escalate_stalled_sends(limit: int = 100) -> int:
    """Escalate sends still `sending` `stalled_send_seconds` after their claim; returns
    how many were escalated (see the module's note)."""
    runtime = get_runtime()
    now = clock.utcnow()
    bound = runtime.settings.stalled_send_seconds
    escalated = 0
    with runtime.engine.begin() as conn:
        stalled = conn.execute(
            _STALLED, {"cutoff": now - timedelta(seconds=bound), "limit": limit}
        ).all()
        for email_id, workspace_id, claimed_at in stalled:
            done = conn.execute(_ESCALATE, {"b_id": email_id, "last_error": REASON, "now": now})
            if done.rowcount != 1:
                continue
            inputs = {"claimed_at": iso(claimed_at), "stalled_send_seconds": bound}
            log_action(conn, workspace_id, email_id, CorrectionAction.ESCALATE, REASON, inputs, now)
            escalated += 1
    return escalated
