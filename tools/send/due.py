"""Stored sends when they fall due: steps 1-6 again, through the same reservation, in batches.

A scheduled row (asked for with `scheduled_for`, or CX08's one reschedule) when its time has
come, and a queued row (accepted with `respond_async`) at once, are checked as a new request
would be: addresses and attachments, then the reservation, which claims the row (`scheduled`
or `queued` -> `sending`) instead of inserting one, so of two workers that found it only one
sends it. What the reservation refuses:
- a suppression or circuit failure that appeared meanwhile marks it `blocked`;
- for a scheduled row, a full hourly limit or a throttled recipient leaves it scheduled for the
  next run (a queued row took its slot when it was accepted).

A worker sends them in batches (`send_stored_emails`, `EMAIL_SEND_BATCH_SIZE` at a time): the
batch is claimed in one transaction, handed over one after the other on the providers' pooled
connections, each succeeding or failing alone, and recorded in one transaction; so a send
costs two commits per batch instead of two of its own. A batch stops starting sends when the
worker is asked to stop, or before the stalled-send sweep could take one still in progress for
dead; the rest are given back as they were. Killed mid-batch, a worker leaves the batch's rows
`sending`, and the sweep escalates them as unconfirmed (never resent), as it would one send.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from sqlalchemy import or_, select

from persistence import EmailExecution, ExecutionStatus, all_workspaces
from tools import clock
from tools.errors import ErrorCode, ToolFailure
from tools.runtime import Runtime, get_runtime
from tools.schemas import SendEmailArgs, parse
from tools.send import queries
from tools.send.checks import CheckedSend, check_send
from tools.send.deliver import deliver_batch
from tools.send.reserve import Execution, Refused, Repeat, Reserved, Taken, reserve_batch

log = logging.getLogger(__name__)

# Refusals a stored send waits out (a paused workspace's sends go once the pause is lifted).
_WAIT = (
    ErrorCode.RATE_LIMIT_EXCEEDED,
    ErrorCode.RECIPIENT_THROTTLED,
    ErrorCode.COMPLAINT_RATE_EXCEEDED,
)
_RECORD_MARGIN_SECONDS = 60
OUTCOMES = ("sent", "delivery_failed", "blocked", "deferred", "skipped", "unrecorded")


# The worker's calls span workspaces: a batch may hold several (`persistence/tenancy.py`).
@all_workspaces()
def send_due_emails(limit: int = 100, stop: threading.Event | None = None) -> dict[str, int]:
    """Send the scheduled emails that are due, oldest first, at most `limit`.

    Returns how many were due and, of those, how many were `sent`, failed at every provider
    (`delivery_failed`: CX08 rescheduled or escalated them), `blocked`, `deferred` (limit or
    throttle, or given back by a batch that stopped), `skipped` (taken by another worker) or
    `unrecorded` (the database went away: left for the stalled-send sweep). Once `stop` is
    set, no further email is started; those left stay scheduled.
    """
    return _send_found(queries.DUE, limit, stop)


@all_workspaces()
def send_queued_emails(limit: int = 100, stop: threading.Event | None = None) -> dict[str, int]:
    """Send the queued emails, oldest first, at most `limit`; counted as `send_due_emails`
    counts (a queued email is `deferred` only when its batch stopped)."""
    return _send_found(queries.QUEUED, limit, stop)


@all_workspaces()
def send_stored_emails(email_ids: list[str], stop: threading.Event | None = None) -> dict[str, str]:
    """Send, as one batch, those of `email_ids` that are queued, or scheduled and due (what a
    worker's task does); what became of each, by id (one of `OUTCOMES`: `skipped` when it was
    not waiting any more, sent or taken by another worker)."""
    runtime = get_runtime()
    runtime.delivery  # noqa: B018 - see `send_email`: built before anything is claimed
    became = dict.fromkeys(email_ids, "skipped")
    checked: list[tuple[CheckedSend, Execution]] = []
    for stored in _waiting(runtime, email_ids):
        due = Execution.of(stored)
        try:
            checked.append((check_send(runtime.settings, due.id, _stored_request(stored)), due))
        except ToolFailure as failure:  # a file gone from the attachments folder, say
            became[due.id] = _block(runtime, due, failure)
    go_on = _go_on(runtime, stop)  # timed from before the claim: its rows' `updated_at`
    batch = []
    for (_, due), reservation in zip(checked, reserve_batch(runtime, checked), strict=True):
        match reservation:
            case Refused(failure, _) if failure.code in _WAIT:
                became[due.id] = "deferred"
            case Refused(failure, _):
                became[due.id] = _block(runtime, due, failure)
            case Reserved():
                batch.append(reservation)
            case Taken():
                pass  # skipped
            case Repeat():
                raise AssertionError("a stored send's only earlier send is itself")
    if batch:
        became.update(deliver_batch(runtime, batch, go_on))
    return became


def _send_found(query: Any, limit: int, stop: threading.Event | None) -> dict[str, int]:
    runtime = get_runtime()
    with runtime.reader.connect() as conn:
        found = conn.scalars(query, {"now": clock.utcnow(), "limit": limit}).all()
    counts = dict.fromkeys(OUTCOMES, 0)
    size = runtime.settings.send_batch_size
    for start in range(0, len(found), size):
        if stop is not None and stop.is_set():
            break
        for outcome in send_stored_emails(list(found[start : start + size]), stop).values():
            counts[outcome] += 1
    return {"due": len(found), **counts}


def _waiting(runtime: Runtime, email_ids: list[str]) -> list[EmailExecution]:
    """The rows of `email_ids` still waiting to be sent, in the order given."""
    ex = EmailExecution
    waiting = select(ex).where(
        ex.id.in_(email_ids),
        or_(
            ex.status == ExecutionStatus.QUEUED,
            (ex.status == ExecutionStatus.SCHEDULED) & (ex.scheduled_for <= clock.utcnow()),
        ),
    )
    with runtime.read_sessions() as session:
        rows = {row.id: row for row in session.scalars(waiting)}
    return [rows[email_id] for email_id in dict.fromkeys(email_ids) if email_id in rows]


def _go_on(runtime: Runtime, stop: threading.Event | None) -> Callable[[], bool]:
    """Whether a batch may start its next send: not once the worker is asked to stop, and not
    so late that the send could outlast `stalled_send_seconds` since the claim (the sweep, and
    the broker, would take it for dead), keeping time to record the batch."""
    settings = runtime.settings
    budget = settings.stalled_send_seconds - settings.longest_delivery_seconds
    budget -= _RECORD_MARGIN_SECONDS
    deadline = runtime.monotonic() + budget
    return lambda: not (stop is not None and stop.is_set()) and runtime.monotonic() < deadline


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


def _block(runtime: Runtime, stored: Execution, failure: ToolFailure) -> str:
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
