"""Stored sends when they fall due: steps 1-6 again, through the same reservation.

A scheduled row (asked for with `scheduled_for`, or CX08's one reschedule) when its time has
come, and a queued row (accepted with `respond_async`) at once, are checked as a new request
would be: addresses and attachments, then the reservation, which claims the row (`scheduled`
or `queued` -> `sending`) instead of inserting one, so of two workers that found it only one
sends it. What the reservation refuses:
- a suppression or circuit failure that appeared meanwhile marks it `blocked`;
- for a scheduled row, a full hourly limit or a throttled recipient leaves it scheduled for the
  next run (a queued row took its slot when it was accepted).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

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
    return _send_each(queries.DUE, send_due_email, limit, stop)


def send_queued_emails(limit: int = 100, stop: threading.Event | None = None) -> dict[str, int]:
    """Send the queued emails, oldest first, at most `limit`; counted as `send_due_emails`
    counts (a queued email is never `deferred`)."""
    return _send_each(queries.QUEUED, send_queued_email, limit, stop)


def send_due_email(email_id: str) -> str:
    """Send one scheduled email if it is due; what became of it (a key of the counts above)."""
    stored = load_execution(email_id)
    if stored.status is not ExecutionStatus.SCHEDULED or stored.scheduled_for > clock.utcnow():
        return "skipped"
    return _send_stored(get_runtime(), stored)


def send_queued_email(email_id: str) -> str:
    """Send one queued email (what a worker's task does); what became of it."""
    stored = load_execution(email_id)
    if stored.status is not ExecutionStatus.QUEUED:
        return "skipped"  # sent, or taken, by another worker already
    return _send_stored(get_runtime(), stored)


def _send_each(
    query: Any, send_one: Callable[[str], str], limit: int, stop: threading.Event | None
) -> dict[str, int]:
    with get_runtime().reader.connect() as conn:
        found = conn.scalars(query, {"now": clock.utcnow(), "limit": limit}).all()
    counts = dict.fromkeys(("sent", "delivery_failed", "blocked", "deferred", "skipped"), 0)
    for email_id in found:
        if stop is not None and stop.is_set():
            break
        counts[send_one(email_id)] += 1
    return {"due": len(found), **counts}


def _send_stored(runtime: Runtime, stored: EmailExecution) -> str:
    try:
        send = check_send(runtime.settings, stored.id, _stored_request(stored))
    except ToolFailure as failure:  # a file gone from the attachments folder, say
        return _block(runtime, stored, failure)
    reservation = reserve(runtime, send, due=Execution.of(stored))
    match reservation:
        case Refused(failure, _) if failure.code in _WAIT:
            return "deferred"
        case Refused(failure, _):
            return _block(runtime, stored, failure)
        case Taken():
            return "skipped"
        case Reserved():
            result = deliver(runtime, reservation)
            return "sent" if result["status"] is ExecutionStatus.SENT else "delivery_failed"
        case Repeat():
            raise AssertionError("a stored send's only earlier send is itself")


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


def _block(runtime: Runtime, stored: EmailExecution, failure: ToolFailure) -> str:
    email_id = stored.id
    with runtime.engine.begin() as conn:
        conn.execute(
            queries.CLAIM,
            {
                "b_id": email_id,
                "from_status": stored.status,
                "status": ExecutionStatus.BLOCKED,
                "error_code": failure.code.value,
                "last_error": failure.message,
                "updated_at": clock.utcnow(),
            },
        )
    log.info("stored email blocked", extra={"email_id": email_id, "error_code": failure.code})
    return "blocked"
