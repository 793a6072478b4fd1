"""Sending an escalated email again, by an operator's hand, when its record proves nothing
was handed over. The row goes back through the whole pipeline (`tools/send/due.py`), and the
action is recorded as the other operator actions are (`tools/operator_actions.py`)."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from persistence import EmailExecution, ExecutionStatus, unavailable
from tools import clock
from tools.boundary import DATABASE_ERRORS, tool_function
from tools.errors import ErrorCode, ToolFailure
from tools.operator_actions import SEND_AGAIN, describe_action, handed_over, record_action
from tools.queue import publish_accepted
from tools.runtime import Runtime, get_runtime
from tools.schemas import SendAgainArgs
from tools.send import send_stored_emails

log = logging.getLogger(__name__)


@tool_function(SendAgainArgs)
def send_again(args: SendAgainArgs) -> dict[str, Any]:
    """Send an escalated email again, when its record proves nothing was handed over: every
    provider refused it (`all_providers_failed`) and none of its attempts was sent or went
    unanswered. Any other escalation (`delivery_unconfirmed`, `internal_error`) may have been
    delivered and is refused, `not_resendable`, as is an email no longer escalated.

    The same row goes round again (its idempotency stays; a new delivery round, with its own
    provider key): `escalated` -> `scheduled`, due now, in one transaction with the record of
    the action; then it is sent through every check, as a due scheduled send is (a
    suppression that appeared meanwhile blocks it), or published for a worker when there is
    a task queue. `outcome`: what the send became (`tools.send.due.OUTCOMES`), or `queued`;
    `status`: the email's status after it. Failing on every provider again, CX08 escalates
    it again.
    """
    runtime = get_runtime()
    with runtime.sessions.begin() as session:
        # Locked as acknowledging does: of two at the same moment, the second finds it
        # scheduled (or further on) and is refused.
        execution = session.get(EmailExecution, args.email_id, with_for_update=True)
        if execution is None or execution.workspace_id != args.workspace_id:
            raise ToolFailure(ErrorCode.NOT_FOUND, "no such email in this workspace")
        _check_resendable(session, execution)
        now = clock.utcnow()
        ex = EmailExecution
        claimed = session.execute(
            update(ex)
            .where(ex.id == execution.id, ex.status == ExecutionStatus.ESCALATED)
            .values(
                status=ExecutionStatus.SCHEDULED,
                scheduled_for=now,
                reserved_at=None,  # it takes a new slot in the limits when it is sent
                reschedule_count=ex.reschedule_count + 1,  # a new round: a new provider key
                published_at=None,
                last_error=None,
                error_code=None,
                updated_at=now,
            )
            .execution_options(synchronize_session=False)
        ).rowcount
        if not claimed:
            raise ToolFailure(ErrorCode.NOT_RESENDABLE, "this email is not escalated any more")
        entry = record_action(
            session, args.workspace_id, SEND_AGAIN, args.email_id, args.note, args.key_fingerprint
        )
        action = describe_action(entry)
    fields = {"email_id": args.email_id, "workspace_id": args.workspace_id}
    log.info("escalated email given back to the pipeline", extra=fields)
    outcome = _send_now(runtime, args.email_id)
    return {
        "success": True,
        "email_id": args.email_id,
        "status": _status_after(runtime, args.email_id, outcome),
        "outcome": outcome,
        "action": action,
    }


def _check_resendable(session: Session, execution: EmailExecution) -> None:
    if execution.status is not ExecutionStatus.ESCALATED:
        raise ToolFailure(
            ErrorCode.NOT_RESENDABLE, f"this email is {execution.status}, not escalated"
        )
    if execution.error_code != ErrorCode.ALL_PROVIDERS_FAILED:
        raise ToolFailure(
            ErrorCode.NOT_RESENDABLE,
            f"this email was escalated as {execution.error_code or 'unknown'}: it may have "
            "been delivered, so it is never sent again; check with the provider",
        )
    if session.scalar(select(handed_over(execution.id))):
        raise ToolFailure(
            ErrorCode.NOT_RESENDABLE,
            "a provider took this email, or may have (an attempt was sent or went "
            "unanswered), so it is never sent again; check with the provider",
        )


def _send_now(runtime: Runtime, email_id: str) -> str:
    """The row, scheduled and due, through the pipeline: published for a worker when there is
    a task queue (not published, the dispatcher publishes it: it is due), else sent here."""
    if runtime.queue is not None:
        publish_accepted(runtime, email_id)
        return "queued"
    try:
        return send_stored_emails([email_id])[email_id]
    except DATABASE_ERRORS as error:
        if not unavailable(error):
            raise
        # Raised only before its claim committed (a batch of one gives nothing back): the
        # row is still scheduled and due, and the worker sends it.
        log.warning("sent again, left for the worker", extra={"email_id": email_id})
        return "deferred"


# The status an outcome leaves the row in, for when it cannot be read back (`skipped`:
# another worker has it).
_STATUS_AFTER = {
    "sent": ExecutionStatus.SENT,
    "delivery_failed": ExecutionStatus.ESCALATED,  # a round after a reschedule: CX08 escalates
    "blocked": ExecutionStatus.BLOCKED,
    "deferred": ExecutionStatus.SCHEDULED,
    "queued": ExecutionStatus.SCHEDULED,
    "skipped": ExecutionStatus.SENDING,
    "unrecorded": ExecutionStatus.SENDING,
}


def _status_after(runtime: Runtime, email_id: str, outcome: str) -> str:
    # The action is committed whatever happens here: a database gone now must not turn the
    # result into a failure that says nothing was changed.
    try:
        with runtime.read_sessions() as session:
            status = session.scalar(
                select(EmailExecution.status).where(EmailExecution.id == email_id)
            )
    except DATABASE_ERRORS as error:
        if not unavailable(error):
            raise
        status = None
    return str(status or _STATUS_AFTER[outcome])
