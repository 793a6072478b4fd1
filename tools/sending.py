"""The send pipeline (DESIGN.md section 4): every check, then exactly one hand-over.

Order of checks, the first failure being the one reported:
 1. shape (pydantic): required fields, UUIDs, no CR/LF in header values, content size;
 2. addresses (email-validator) and attachments (inside EMAIL_ATTACHMENTS_DIR only);
 3-7. in one database transaction holding the workspace's lock: the workspace, circuits
    CX01-CX06 and the CX06 content hash; a repeat of an earlier send (returned as it was,
    nothing sent); suppression, the per-recipient throttle, the hourly limit; then the
    execution row is written (status `sending`). The transaction commits before the message
    can be handed over: the provider commits it while its first command is on the way
    (`tools/reservation.py`);
 8-11. hand over through the provider chain (rendering on the way), record the outcome and the
    attempts.

The repeat check comes before suppression and limits on purpose: a client retrying a request
must get its first result back, not a throttle error caused by its own first send.
"""

from __future__ import annotations

import logging
import threading
import uuid
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Row, select
from sqlalchemy.exc import IntegrityError

from persistence import EmailExecution, begin_unsynced
from tools import clock, self_correction, send_queries
from tools.addresses import CheckedAddress, check_address
from tools.attachments import load_attachments
from tools.circuits import CircuitState, circuit_state, content_hash, generated_asset
from tools.clock import iso
from tools.errors import ErrorCode, ToolFailure, echo
from tools.providers.base import Attachment, Content, OutgoingEmail
from tools.providers.chain import DeliveryOutcome
from tools.rendering import render_email
from tools.reservation import Reservation
from tools.runtime import Runtime, get_runtime
from tools.schemas import FinalAsset, SendEmailArgs, parse
from tools.suppression import active_suppression

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _WorkspaceView:
    id: str
    sender_email: str
    sender_name: str | None
    postal_address: str
    rate_limit_per_hour: int | None


@dataclass(frozen=True)
class _Send:
    """A request that passed checks 1-3: everything needed to reserve, render and deliver."""

    email_id: str
    args: SendEmailArgs
    to: CheckedAddress
    cc: tuple[CheckedAddress, ...]
    bcc: tuple[CheckedAddress, ...]
    attachments: tuple[Attachment, ...]
    asset: FinalAsset
    content_hash: str
    workspace: _WorkspaceView
    circuits: CircuitState

    @property
    def keys(self) -> list[str]:
        return [a.key for a in (self.to, *self.cc, *self.bcc)]


@dataclass
class _Execution:
    """An execution row as the send path reads and updates it.

    Not the ORM class: building an ORM instance per send cost as much as one of its queries.
    """

    id: str
    workspace_id: str
    circuit_execution_id: str
    recipient: str
    status: str
    scheduled_for: datetime | None
    reserved_at: datetime | None
    sent: bool
    provider: str | None
    provider_message_id: str | None
    sent_at: datetime | None
    attempt_number: int
    retry_count: int
    reschedule_count: int
    last_error: str | None
    error_code: str | None
    updated_at: datetime

    @classmethod
    def of(cls, source: EmailExecution | dict[str, Any]) -> _Execution:
        """The fields of an ORM row, or of the values a row was inserted with."""
        if isinstance(source, dict):
            return cls(**{name: source[name] for name in _EXECUTION_FIELDS})
        return cls(**{name: getattr(source, name) for name in _EXECUTION_FIELDS})


_EXECUTION_FIELDS = tuple(field.name for field in fields(_Execution))


class _Duplicate(Exception):
    def __init__(self, email_id: str) -> None:
        self.email_id = email_id


def send_email(
    workspace_id: str,
    client_id: str,
    circuit_execution_id: str,
    recipient: str,
    final_asset: dict[str, Any] | None = None,
    cc: list[str] | None = None,
    bcc: list[str] | None = None,
    attachments: list[str] | None = None,
    scheduled_for: str | None = None,
) -> dict[str, Any]:
    """Send CX06's approved asset to one recipient once every check passes.

    Returns the send result (status sent, scheduled, escalated or blocked; `error` whenever it
    was not sent, a send CX08 rescheduled after a failure included). A repeat of an earlier
    (workspace, execution, recipient) returns the first result with error `duplicate_send` and
    sends nothing.
    """
    runtime = get_runtime()
    arguments = {
        "workspace_id": workspace_id,
        "client_id": client_id,
        "circuit_execution_id": circuit_execution_id,
        "recipient": recipient,
        "final_asset": final_asset,
        "cc": cc,
        "bcc": bcc,
        "attachments": attachments,
        "scheduled_for": scheduled_for,
    }
    circuits: CircuitState | None = None
    try:
        args = parse(SendEmailArgs, arguments)
        to, copies, blind, files = _check_inputs(runtime, args)
        scheduled = args.scheduled_for is not None and args.scheduled_for > clock.utcnow()
        try:
            reservation = Reservation(runtime.engine)
            try:
                conn = reservation.connection
                workspace = _lock_workspace(conn, args.workspace_id)
                circuits = circuit_state(conn, args.workspace_id, args.circuit_execution_id)
                asset, digest = _approved_asset(conn, circuits, args.final_asset)
                send = _Send(
                    str(uuid.uuid4()),
                    args,
                    to,
                    copies,
                    blind,
                    files,
                    asset,
                    digest,
                    workspace,
                    circuits,
                )
                now = clock.utcnow()
                checks = _send_checks(runtime, conn, send, now)
                row = _reserve(
                    runtime, conn, send, checks, now, status="scheduled" if scheduled else "sending"
                )
                breakers = {} if scheduled else _open_breakers(conn, checks)
                if scheduled:
                    reservation.commit()
            except BaseException:
                reservation.abandon()
                raise
        except IntegrityError:
            # Only reachable if rows were written around the lock: still one send.
            raise _Duplicate(_existing_id(runtime, args, to)) from None
    except _Duplicate as duplicate:
        return _duplicate_result(_Execution.of(_load(runtime, duplicate.email_id)), circuits)
    except ToolFailure as failure:
        log.info(
            "send blocked",
            extra={"workspace_id": echo(workspace_id), "error_code": failure.code.value},
        )
        return _blocked_result(arguments, failure, circuits)
    if scheduled:
        log.info("email scheduled", extra=_log_fields(row))
        return _row_result(row, circuits, message=f"Email scheduled for {iso(row.scheduled_for)}")
    return _deliver(runtime, send, row, breakers, reservation)


def _check_inputs(
    runtime: Runtime, args: SendEmailArgs
) -> tuple[
    CheckedAddress, tuple[CheckedAddress, ...], tuple[CheckedAddress, ...], tuple[Attachment, ...]
]:
    deliverability = runtime.settings.check_deliverability
    to = check_address(args.recipient, check_deliverability=deliverability, field="recipient")
    copies = tuple(
        check_address(a, check_deliverability=deliverability, field=f"cc[{i}]")
        for i, a in enumerate(args.cc)
    )
    blind = tuple(
        check_address(a, check_deliverability=deliverability, field=f"bcc[{i}]")
        for i, a in enumerate(args.bcc)
    )
    # One copy per person: a repeated or differently-cased address is dropped.
    seen = {to.key}
    copies = tuple(a for a in copies if a.key not in seen and not seen.add(a.key))
    blind = tuple(a for a in blind if a.key not in seen and not seen.add(a.key))
    files = load_attachments(
        args.attachments,
        folder=runtime.settings.attachments_dir,
        max_bytes=runtime.settings.max_attachment_bytes,
    )
    return to, copies, blind, files


def _lock_workspace(conn: Connection, workspace_id: str) -> _WorkspaceView:
    """Load the workspace and hold its lock until the transaction ends."""
    statement = send_queries.LOCK_WORKSPACE.get(
        conn.dialect.name, send_queries.LOCK_WORKSPACE["default"]
    )
    found = conn.execute(statement, {"workspace_id": workspace_id}).first()
    if found is None:
        raise ToolFailure(ErrorCode.UNKNOWN_WORKSPACE, "no such workspace")
    return _WorkspaceView(*found)


def _approved_asset(
    conn: Connection, state: CircuitState, requested: FinalAsset | None
) -> tuple[FinalAsset, str]:
    """The asset to send and its hash, once CX01-CX06 passed and CX06's hash (if any) matches."""
    if not state.all_passed:
        raise ToolFailure(
            ErrorCode.CIRCUIT_VALIDATION_FAILED,
            "Circuit validation failed",
            missing_circuits=state.missing,
            failed_circuits=state.failed,
            passed_circuits=state.passed,
        )
    asset = requested or generated_asset(conn, state)
    if asset is None:
        raise ToolFailure(
            ErrorCode.MISSING_FIELD,
            "final_asset is required (CX06 logged no output to send)",
            field="final_asset",
        )
    digest = content_hash(asset)
    if state.generated_hash is not None and digest != state.generated_hash:
        raise ToolFailure(
            ErrorCode.CONTENT_MISMATCH,
            "final_asset differs from the asset CX06 generated for this execution",
        )
    return asset, digest


def _reserve(
    runtime: Runtime,
    conn: Connection,
    send: _Send,
    checks: Row[Any],
    now: datetime,
    *,
    status: str,
) -> _Execution:
    """Write the execution row once no earlier send, suppression or limit stands in the way.

    Runs inside the transaction holding the workspace lock. Returns the row as written.
    """
    args = send.args
    if checks.existing_id is not None:
        raise _Duplicate(checks.existing_id)
    _check_policy(runtime, conn, send, checks, now, limits=status == "sending")
    values: dict[str, Any] = {
        "id": send.email_id,
        "workspace_id": args.workspace_id,
        "circuit_execution_id": args.circuit_execution_id,
        "client_id": args.client_id,
        "recipient": send.to.normalized,
        "recipient_key": send.to.key,
        "recipient_count": len(send.keys),
        "cc": [a.normalized for a in send.cc],
        "bcc": [a.normalized for a in send.bcc],
        "subject": send.asset.subject,
        "preheader": send.asset.preheader,
        "html_body": send.asset.html_body,
        "text_body": send.asset.text_body,
        "cta_url": send.asset.cta_url,
        "tags": list(send.asset.tags),
        "attachments": list(args.attachments),
        "content_hash": send.content_hash,
        "message_id": _message_id(send),
        "status": status,
        "sent": False,
        "provider": None,
        "provider_message_id": None,
        "sent_at": None,
        "scheduled_for": args.scheduled_for if status == "scheduled" else None,
        "reserved_at": now if status == "sending" else None,
        "attempt_number": 0,
        "retry_count": 0,
        "reschedule_count": 0,
        "last_error": None,
        "error_code": None,
        "created_at": now,
        "updated_at": now,
    }
    conn.execute(send_queries.INSERT_EXECUTION, values)
    return _Execution.of(values)


def _existing_id(runtime: Runtime, args: SendEmailArgs, to: CheckedAddress) -> str:
    with runtime.engine.connect() as conn:
        found = conn.scalar(
            send_queries.EXISTING_SEND,
            {
                "workspace_id": args.workspace_id,
                "circuit_execution_id": args.circuit_execution_id,
                "recipient_key": to.key,
            },
        )
    assert found is not None, "unique violation without a row to show for it"
    return str(found)


def _load(runtime: Runtime, email_id: str) -> EmailExecution:
    with runtime.sessions() as session:
        row = session.get(EmailExecution, email_id)
    assert row is not None
    return row


def _message_id(send: _Send) -> str:
    return f"<{send.email_id}@{send.workspace.sender_email.rpartition('@')[2]}>"


def send_due_emails(limit: int = 100, stop: threading.Event | None = None) -> dict[str, int]:
    """Send the scheduled emails that are due, through the checks again (steps 3-11).

    A suppression or circuit failure that appeared meanwhile marks the email `blocked`; a
    full hourly limit or a throttled recipient leaves it scheduled for the next run. Once
    `stop` is set, no further email is started; those left stay scheduled.
    """
    runtime = get_runtime()
    with runtime.sessions() as session:
        due = session.scalars(
            select(EmailExecution.id)
            .where(
                EmailExecution.status == "scheduled",
                EmailExecution.scheduled_for <= clock.utcnow(),
            )
            .order_by(EmailExecution.scheduled_for)
            .limit(limit)
        ).all()
    counts = {"due": len(due), "sent": 0, "failed": 0, "blocked": 0, "deferred": 0, "skipped": 0}
    for email_id in due:
        if stop is not None and stop.is_set():
            break
        counts[_send_scheduled(runtime, email_id)] += 1
    return counts


def _send_scheduled(runtime: Runtime, email_id: str) -> str:
    stored = _load(runtime, email_id)
    row = _Execution.of(stored)
    if row.status != "scheduled":
        return "skipped"
    try:
        asset = FinalAsset(
            subject=stored.subject,
            preheader=stored.preheader,
            html_body=stored.html_body,
            text_body=stored.text_body,
            cta_url=stored.cta_url,
            tags=stored.tags,
        )
        args = SendEmailArgs(
            workspace_id=row.workspace_id,
            client_id=stored.client_id,
            circuit_execution_id=row.circuit_execution_id,
            recipient=row.recipient,
            final_asset=asset,
            cc=stored.cc,
            bcc=stored.bcc,
            attachments=stored.attachments,
        )
        to, copies, blind, files = _check_inputs(runtime, args)
        reservation = Reservation(runtime.engine)
        try:
            conn = reservation.connection
            workspace = _lock_workspace(conn, row.workspace_id)
            circuits = circuit_state(conn, row.workspace_id, row.circuit_execution_id)
            asset, digest = _approved_asset(conn, circuits, asset)
            send = _Send(row.id, args, to, copies, blind, files, asset, digest, workspace, circuits)
            now = clock.utcnow()
            checks = _send_checks(runtime, conn, send, now)
            # The earlier send these checks find is this very email: only policy applies.
            _check_policy(runtime, conn, send, checks, now, limits=True)
            claimed = conn.execute(
                send_queries.CLAIM_SCHEDULED,
                {"b_id": row.id, "status": "sending", "reserved_at": now, "updated_at": now},
            )
            breakers = _open_breakers(conn, checks)
        except BaseException:
            reservation.abandon()
            raise
        if claimed.rowcount != 1:
            reservation.abandon()
            return "skipped"  # another worker took it first
    except ToolFailure as failure:
        if failure.code in (ErrorCode.RATE_LIMIT_EXCEEDED, ErrorCode.RECIPIENT_THROTTLED):
            return "deferred"
        with runtime.engine.begin() as conn:
            conn.execute(
                send_queries.CLAIM_SCHEDULED,
                {
                    "b_id": email_id,
                    "status": "blocked",
                    "error_code": failure.code.value,
                    "last_error": failure.message,
                    "updated_at": clock.utcnow(),
                },
            )
        log.info(
            "scheduled email blocked",
            extra={"email_id": email_id, "error_code": failure.code.value},
        )
        return "blocked"
    result = _deliver(runtime, send, row, breakers, reservation)
    return "sent" if result["status"] == "sent" else "failed"


def _send_checks(runtime: Runtime, conn: Connection, send: _Send, now: datetime) -> Row[Any]:
    """(existing_id, suppressed, used, recent, breaker_open): what a send is decided on."""
    settings = runtime.settings
    return conn.execute(
        send_queries.SEND_CHECKS,
        {
            "workspace_id": send.workspace.id,
            "circuit_execution_id": send.args.circuit_execution_id,
            "recipient_key": send.to.key,
            "keys": send.keys,
            "bounce_cutoff": now - timedelta(days=settings.bounce_suppression_days),
            "hour_ago": now - timedelta(hours=1),
            "throttle_since": now - timedelta(seconds=settings.recipient_throttle_seconds),
        },
    ).one()


def _open_breakers(conn: Connection, checks: Row[Any]) -> dict[str, datetime]:
    """The providers cooling down, read only when the checks saw an open breaker."""
    return self_correction.open_breakers(conn) if checks.breaker_open else {}


def _check_policy(
    runtime: Runtime,
    conn: Connection,
    send: _Send,
    checks: Row[Any],
    now: datetime,
    *,
    limits: bool,
) -> None:
    """Suppression, and (when sending now) the recipient throttle and the hourly limit."""
    settings = runtime.settings
    workspace = send.workspace
    # Which entry blocks, and why, is read only when one does. (On PostgreSQL an entry removed
    # in between is simply gone: nothing blocks any more.)
    entry = (
        active_suppression(
            conn, workspace.id, send.keys, bounce_days=settings.bounce_suppression_days, now=now
        )
        if checks.suppressed
        else None
    )
    if entry is not None:
        raise ToolFailure(
            ErrorCode.SUPPRESSED,
            f"Recipient validation failed: {entry.reason}_suppressed",
            reason=entry.reason,
            email=entry.email,
        )
    if not limits:
        return
    if settings.recipient_throttle_seconds > 0 and checks.recent:
        raise ToolFailure(
            ErrorCode.RECIPIENT_THROTTLED,
            f"Recipient validation failed: recipient_throttled (one email per "
            f"{settings.recipient_throttle_seconds} s per recipient)",
            retry_after_seconds=settings.recipient_throttle_seconds,
        )
    limit = workspace.rate_limit_per_hour or settings.rate_limit_per_hour
    used = checks.used
    if used + len(send.keys) > limit:
        raise ToolFailure(
            ErrorCode.RATE_LIMIT_EXCEEDED,
            f"Recipient validation failed: rate_limit_exceeded ({limit} recipients per hour, "
            f"{used} used)",
            limit=limit,
        )


def _outgoing(runtime: Runtime, send: _Send, delivery_round: int) -> OutgoingEmail:
    workspace = send.workspace

    def render() -> Content:
        token = runtime.tokens.make(workspace.id, send.to.key, send.email_id)
        https_link = f"{runtime.settings.public_base_url}/api/email/unsubscribe?token={token}"
        mailto = runtime.settings.unsubscribe_mailto or workspace.sender_email
        content = render_email(
            send.asset,
            postal_address=workspace.postal_address,
            sender_name=workspace.sender_name,
            unsubscribe_url=https_link,
        )
        unsubscribe = f"<{https_link}>, <mailto:{mailto}?subject=unsubscribe-{token}>"
        return Content(
            html=content.html,
            text=content.text,
            headers={
                "List-Unsubscribe": unsubscribe,
                "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            },
        )

    return OutgoingEmail(
        email_id=send.email_id,
        workspace_id=workspace.id,
        # One key per delivery round: a round re-renders (a fresh unsubscribe token), and a
        # provider refuses one key with a different body.
        idempotency_key=f"{send.email_id}.{delivery_round}",
        message_id=_message_id(send),
        sender_email=workspace.sender_email,
        sender_name=workspace.sender_name,
        to=send.to.wire,
        cc=tuple(a.wire for a in send.cc),
        bcc=tuple(a.wire for a in send.bcc),
        subject=send.asset.subject,
        render=render,
        tags=tuple(send.asset.tags),
        attachments=send.attachments,
    )


def _deliver(
    runtime: Runtime,
    send: _Send,
    row: _Execution,
    breakers: dict[str, datetime],
    reservation: Reservation,
) -> dict[str, Any]:
    """Hand over (rendering on the way), record. The provider commits `reservation` before
    the hand-over, so the row says `sending` before the message can leave: a crash leaves a
    trace."""
    try:
        outcome = runtime.delivery.deliver(
            _outgoing(runtime, send, row.reschedule_count),
            skip=self_correction.cooling_down(breakers, clock.utcnow()),
            first_attempt_number=row.attempt_number + 1,
            before_handover=reservation.commit,
        )
        reservation.commit()  # no provider did (every one was skipped)
    except Exception as error:
        if not reservation.committed:
            raise  # nothing left before the commit, and nothing is written (see `finally`)
        # Whether the message was handed over is unknown: CX08 escalates, never resends.
        crashed = DeliveryOutcome(
            sent=False, ambiguous=True, last_error=f"internal error: {type(error).__name__}"
        )
        _record(runtime, send, row, crashed, breakers, error_code=ErrorCode.INTERNAL_ERROR)
        raise
    finally:
        reservation.abandon()  # rolls back only a reservation that was never committed
    decision = _record(runtime, send, row, outcome, breakers)
    if outcome.sent:
        log.info("email sent", extra=_log_fields(row))
        result = _row_result(row, send.circuits, message=f"Email sent via {row.provider}")
    else:
        assert decision is not None
        log.error("delivery failed", extra={**_log_fields(row), "cx08_action": decision.action})
        result = _row_result(
            row,
            send.circuits,
            message=f"Sending failed; CX08: {decision.reason}",
            error={"code": row.error_code, "message": outcome.last_error},
        )
        result["self_correction"] = decision.as_dict()
    if outcome.skipped:
        result["providers_skipped"] = outcome.skipped  # breakers open (CX08)
    return result


def _record(
    runtime: Runtime,
    send: _Send,
    row: _Execution,
    outcome: DeliveryOutcome,
    breakers: dict[str, datetime],
    error_code: ErrorCode | None = None,
) -> self_correction.Decision | None:
    """Store the outcome, every attempt, the metrics row (when sent) and provider health; on
    failure, CX08's decision. Updates `row` to match and returns the decision, if any."""
    now = clock.utcnow()
    if error_code is None and not outcome.sent:
        error_code = (
            ErrorCode.DELIVERY_UNCONFIRMED if outcome.ambiguous else ErrorCode.ALL_PROVIDERS_FAILED
        )
    values: dict[str, Any] = {
        "status": "sent",  # when not sent, CX08's decision below says what it becomes
        "sent": outcome.sent,
        "provider": outcome.provider
        or (outcome.attempts[-1].provider if outcome.attempts else None),
        "provider_message_id": outcome.provider_message_id,
        "sent_at": now if outcome.sent else None,
        "attempt_number": row.attempt_number + len(outcome.attempts),
        "retry_count": outcome.retry_count,
        "last_error": outcome.last_error,
        "error_code": None if error_code is None else error_code.value,
        "updated_at": now,
    }
    decision = None
    # Unsynced, so a send waits for the disk once (the reservation), not twice. A power cut
    # may lose this record, never the reservation: the row then stays `sending`, and CX08
    # escalates it as unconfirmed once it has stalled (nothing is resent).
    with begin_unsynced(runtime.engine) as conn:
        if not outcome.sent:
            decision = self_correction.decide_after_failure(
                conn,
                runtime.settings,
                outcome,
                workspace_id=send.workspace.id,
                execution_id=send.email_id,
                reschedule_count=row.reschedule_count,
                now=now,
            )
            values["status"] = decision.status
            if decision.action == "reschedule":
                # The slot in the hourly limit is given back; the worker takes a new one.
                values.update(
                    scheduled_for=decision.scheduled_for,
                    reserved_at=None,
                    reschedule_count=row.reschedule_count + 1,
                )
        conn.execute(send_queries.UPDATE_EXECUTION, {"b_id": send.email_id, **values})
        if outcome.attempts:
            conn.execute(
                send_queries.INSERT_ATTEMPTS,
                [
                    {
                        "id": str(uuid.uuid4()),
                        "execution_id": send.email_id,
                        "workspace_id": send.workspace.id,
                        "provider": attempt.provider,
                        "attempt_number": attempt.attempt_number,
                        "outcome": attempt.outcome,
                        "status_code": attempt.status_code,
                        "error": attempt.error,
                        "latency_ms": attempt.latency_ms,
                        "created_at": now,
                    }
                    for attempt in outcome.attempts
                ],
            )
            self_correction.record_provider_health(
                conn,
                runtime.settings,
                outcome,
                breakers,
                workspace_id=send.workspace.id,
                execution_id=send.email_id,
                now=now,
            )
        if outcome.sent:
            conn.execute(
                send_queries.INSERT_METRICS[conn.dialect.name],
                {
                    "id": str(uuid.uuid4()),
                    "workspace_id": send.workspace.id,
                    "execution_id": send.email_id,
                    "circuit_execution_id": send.args.circuit_execution_id,
                    "provider_message_id": outcome.provider_message_id,
                    "provider": outcome.provider,
                    "delivered": False,
                    "bounced": False,
                    "opened": False,
                    "clicked": False,
                    "unsubscribed": False,
                    "complained": False,
                    "created_at": now,
                },
            )
    for name, value in values.items():
        setattr(row, name, value)
    return decision


def _log_fields(row: _Execution) -> dict[str, Any]:
    return {
        "email_id": row.id,
        "workspace_id": row.workspace_id,
        "provider": row.provider,
        "status": row.status,
    }


def _execution_result(row: _Execution) -> dict[str, Any] | None:
    if row.attempt_number == 0:
        return None
    return {
        "sent": row.sent,
        "provider": row.provider,
        "provider_message_id": row.provider_message_id,
        "sent_at": iso(row.sent_at),
        "retry_count": row.retry_count,
        "attempts": row.attempt_number,
    }


def _row_result(
    row: _Execution,
    circuits: CircuitState | None,
    *,
    message: str,
    error: dict[str, Any] | None = None,
) -> dict[str, Any]:
    result: dict[str, Any] = {
        "email_id": row.id,
        "status": row.status,
        "message": message,
        "timestamp": clock.utcnow().isoformat(),
        "recipient": row.recipient,
        "workspace_id": row.workspace_id,
        "circuit_execution_id": row.circuit_execution_id,
    }
    if row.scheduled_for is not None:
        result["scheduled_for"] = iso(row.scheduled_for)
    execution = _execution_result(row)
    if execution is not None:
        result["execution_result"] = execution
    if circuits is not None:
        result["circuit_validation"] = circuits.as_dict()
    if error is not None:
        result["error"] = error
    return result


def _duplicate_result(row: _Execution, circuits: CircuitState | None) -> dict[str, Any]:
    result = _row_result(
        row,
        circuits,
        message="Already handled: this is the first result; nothing was sent again",
        error={
            "code": ErrorCode.DUPLICATE_SEND.value,
            "message": "This execution was already sent to this recipient",
            "email_id": row.id,
        },
    )
    result["duplicate"] = True
    return result


def _blocked_result(
    arguments: dict[str, Any], failure: ToolFailure, circuits: CircuitState | None
) -> dict[str, Any]:
    result: dict[str, Any] = {
        "email_id": None,
        "status": "blocked",
        "message": failure.message,
        "timestamp": clock.utcnow().isoformat(),
        "recipient": echo(arguments.get("recipient")),
        "workspace_id": echo(arguments.get("workspace_id")),
        "circuit_execution_id": echo(arguments.get("circuit_execution_id")),
        "error": failure.error_dict(),
    }
    if circuits is not None:
        result["circuit_validation"] = circuits.as_dict()
    return result
