"""Scheduled sends when they fall due: steps 1-6 again, through the same reservation.

A scheduled row (asked for with `scheduled_for`, or CX08's one reschedule) is checked as a new
request would be: its addresses and attachments, then the reservation, which claims the row
(`scheduled` -> `sending`) instead of inserting one, so of two workers that found it due only
one sends it. What the reservation refuses:
- a suppression or circuit failure that appeared meanwhile marks it `blocked`;
- a full hourly limit or a throttled recipient leaves it scheduled for the next run.
"""

from __future__ import annotations

import logging
import threading

from persistence import EmailExecution, ExecutionStatus
from tools import clock
from tools.errors import ErrorCode, ToolFailure
from tools.runtime import Runtime, get_runtime
from tools.schemas import SendEmailArgs, parse
from tools.send import queries
from tools.send.checks import check_send
from tools.send.deliver import deliver
from tools.send.reserve import Execution, Refused, Repeat, Reserved, Taken, reserve
from tools.status import load_execution

log = logging.getLogger(__name__)

_WAIT = (ErrorCode.RATE_LIMIT_EXCEEDED, ErrorCode.RECIPIENT_THROTTLED)


def send_due_emails(limit: int = 100, stop: threading.Event | None = None) -> dict[str, int]:
    """Send the scheduled emails that are due, oldest first, at most `limit`.

    Returns how many were due and, of those, how many were `sent`, failed at every provider
    (`delivery_failed`: CX08 rescheduled or escalated them), `blocked`, `deferred` (limit or
    throttle) or `skipped` (taken by another worker). Once `stop` is set, no further email is
    started; those left stay scheduled.
    """
    runtime = get_runtime()
    with runtime.reader.connect() as conn:
        due = conn.scalars(queries.DUE, {"now": clock.utcnow(), "limit": limit}).all()
    counts = dict.fromkeys(("sent", "delivery_failed", "blocked", "deferred", "skipped"), 0)
    for email_id in due:
        if stop is not None and stop.is_set():
            break
        counts[send_due_email(email_id)] += 1
    return {"due": len(due), **counts}


def send_due_email(email_id: str) -> str:
    """Send one scheduled email if it is due; what became of it (a key of the counts above)."""
    runtime = get_runtime()
    stored = load_execution(email_id)
    if stored.status is not ExecutionStatus.SCHEDULED or stored.scheduled_for > clock.utcnow():
        return "skipped"
    try:
        send = check_send(runtime.settings, stored.id, _stored_request(stored))
    except ToolFailure as failure:  # a file gone from the attachments folder, say
        return _block(runtime, email_id, failure)
    reservation = reserve(runtime, send, due=Execution.of(stored))
    match reservation:
        case Refused(failure, _) if failure.code in _WAIT:
            return "deferred"
        case Refused(failure, _):
            return _block(runtime, email_id, failure)
        case Taken():
            return "skipped"
        case Reserved():
            result = deliver(runtime, reservation)
            return "sent" if result["status"] is ExecutionStatus.SENT else "delivery_failed"
        case Repeat():
            raise AssertionError("a due send's only earlier send is itself")


def _stored_request(stored: EmailExecution) -> SendEmailArgs:
    asset = {
        "subject": stored.subject,
        "preheader": stored.preheader,
        "html_body": stored.html_body,
        "text_body": stored.text_body,
        "cta_url": stored.cta_url,
        "tags": stored.tags,
    }
    # Parsed as a request is, so a row that no longer fits the rules is blocked, not a crash
    # of the whole pass (it would come first again at every poll).
    return parse(
        SendEmailArgs,
        {
            "workspace_id": stored.workspace_id,
            "client_id": stored.client_id,
            "circuit_execution_id": stored.circuit_execution_id,
            "recipient": stored.recipient,
            "final_asset": asset,
            "cc": stored.cc,
            "bcc": stored.bcc,
            "attachments": stored.attachments,
        },
    )


def _block(runtime: Runtime, email_id: str, failure: ToolFailure) -> str:
    with runtime.engine.begin() as conn:
        conn.execute(
            queries.CLAIM_SCHEDULED,
            {
                "b_id": email_id,
                "status": ExecutionStatus.BLOCKED,
                "error_code": failure.code.value,
                "last_error": failure.message,
                "updated_at": clock.utcnow(),
            },
        )
    log.info("scheduled email blocked", extra={"email_id": email_id, "error_code": failure.code})
    return "blocked"
