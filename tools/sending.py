"""The send pipeline (DESIGN.md section 4): every check, then exactly one hand-over.

Order of checks, the first failure being the one reported:
 1. shape (pydantic): required fields, UUIDs, no CR/LF in header values, content size;
 2. addresses (email-validator) and attachments (inside EMAIL_ATTACHMENTS_DIR only);
 3. workspace, circuits CX01-CX06, and the CX06 content hash;
 4. in one database transaction holding the workspace's lock: a repeat of an earlier send
    (returned as it was, nothing sent), suppression, the per-recipient throttle, the hourly
    limit, then the execution row is written (status `sending`) before any provider is called;
 5. render, hand over through the provider chain, record the outcome and the attempts.

The repeat check comes before suppression and limits on purpose: a client retrying a request
must get its first result back, not a throttle error caused by its own first send.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from persistence import (
    DeliveryAttempt,
    EmailExecution,
    EmailMetrics,
    Workspace,
    lock_workspace,
)
from tools import clock
from tools.addresses import CheckedAddress, check_address
from tools.attachments import load_attachments
from tools.circuits import CircuitState, circuit_state, content_hash
from tools.errors import ErrorCode, ToolFailure
from tools.providers.base import Attachment, OutgoingEmail
from tools.providers.chain import DeliveryOutcome
from tools.rendering import render_email
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
    """A request that passed steps 1-3: everything needed to reserve, render and deliver."""

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


class _Duplicate(Exception):
    def __init__(self, row: EmailExecution) -> None:
        self.row = row


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def _wire(address: CheckedAddress) -> str:
    return address.ascii_email or address.normalized


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

    Returns the send result (status sent, scheduled, failed or blocked; `error` when not sent
    or scheduled). A repeat of an earlier (workspace, execution, recipient) returns the first
    result with error `duplicate_send` and sends nothing.
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
    arguments = {k: v for k, v in arguments.items() if v is not None}
    circuits: CircuitState | None = None
    try:
        args = parse(SendEmailArgs, arguments)
        to, copies, blind, files = _check_inputs(runtime, args)
        with runtime.sessions() as session:
            workspace = _workspace_view(session, args.workspace_id)
            circuits = circuit_state(session, args.workspace_id, args.circuit_execution_id)
        asset, digest = _approved_asset(circuits, args.final_asset)
        send = _Send(
            str(uuid.uuid4()), args, to, copies, blind, files, asset, digest, workspace, circuits
        )
        now = clock.utcnow()
        if args.scheduled_for is not None and args.scheduled_for > now:
            row = _reserve(runtime, send, status="scheduled")
            log.info("email scheduled", extra=_log_fields(row))
            return _row_result(
                row, circuits, message=f"Email scheduled for {_iso(row.scheduled_for)}"
            )
        _reserve(runtime, send, status="sending")
    except _Duplicate as duplicate:
        return _duplicate_result(duplicate.row, circuits)
    except ToolFailure as failure:
        log.info(
            "send blocked",
            extra={"workspace_id": arguments.get("workspace_id"), "error_code": failure.code.value},
        )
        return _blocked_result(arguments, failure, circuits)
    return _deliver(runtime, send)


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
    files = load_attachments(
        args.attachments,
        folder=runtime.settings.attachments_dir,
        max_bytes=runtime.settings.max_attachment_bytes,
    )
    return to, copies, blind, files


def _workspace_view(session: Session, workspace_id: str) -> _WorkspaceView:
    workspace = session.get(Workspace, workspace_id)
    if workspace is None:
        raise ToolFailure(ErrorCode.UNKNOWN_WORKSPACE, "no such workspace")
    return _WorkspaceView(
        workspace.id,
        workspace.sender_email,
        workspace.sender_name,
        workspace.postal_address,
        workspace.rate_limit_per_hour,
    )


def _approved_asset(state: CircuitState, requested: FinalAsset | None) -> tuple[FinalAsset, str]:
    """The asset to send and its hash, once CX01-CX06 passed and CX06's hash (if any) matches."""
    if not state.all_passed:
        raise ToolFailure(
            ErrorCode.CIRCUIT_VALIDATION_FAILED,
            "Circuit validation failed",
            missing_circuits=state.missing,
            failed_circuits=state.failed,
            passed_circuits=state.passed,
        )
    asset = requested or state.generated_asset
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


def _reserve(runtime: Runtime, send: _Send, *, status: str) -> EmailExecution:
    """Write the execution row, under the workspace lock, once policy and limits allow it."""
    now = clock.utcnow()
    args = send.args
    row = EmailExecution(
        id=send.email_id,
        workspace_id=args.workspace_id,
        circuit_execution_id=args.circuit_execution_id,
        client_id=args.client_id,
        recipient=send.to.normalized,
        recipient_key=send.to.key,
        cc=[a.normalized for a in send.cc],
        bcc=[a.normalized for a in send.bcc],
        subject=send.asset.subject,
        preheader=send.asset.preheader,
        html_body=send.asset.html_body,
        text_body=send.asset.text_body,
        cta_url=send.asset.cta_url,
        tags=list(send.asset.tags),
        attachments=list(args.attachments),
        content_hash=send.content_hash,
        message_id=f"<{send.email_id}@{send.workspace.sender_email.rpartition('@')[2]}>",
        status=status,
        sent=False,
        scheduled_for=args.scheduled_for if status == "scheduled" else None,
        reserved_at=now if status == "sending" else None,
        attempt_number=0,
        retry_count=0,
        created_at=now,
        updated_at=now,
    )
    try:
        with runtime.sessions() as session, session.begin():
            workspace = lock_workspace(session, args.workspace_id)
            if workspace is None:
                raise ToolFailure(ErrorCode.UNKNOWN_WORKSPACE, "no such workspace")
            existing = session.scalars(
                select(EmailExecution).where(
                    EmailExecution.workspace_id == args.workspace_id,
                    EmailExecution.circuit_execution_id == args.circuit_execution_id,
                    EmailExecution.recipient_key == send.to.key,
                )
            ).first()
            if existing is not None:
                session.expunge(existing)  # keep its loaded state through the rollback
                raise _Duplicate(existing)
            _check_policy(runtime, session, send, workspace, limits=status == "sending")
            session.add(row)
    except IntegrityError:
        # Only reachable if the lock was bypassed (e.g. rows written by hand): still one send.
        with runtime.sessions() as session:
            existing = session.scalars(
                select(EmailExecution).where(
                    EmailExecution.workspace_id == args.workspace_id,
                    EmailExecution.circuit_execution_id == args.circuit_execution_id,
                    EmailExecution.recipient_key == send.to.key,
                )
            ).one()
        raise _Duplicate(existing) from None
    return row


def send_due_emails(limit: int = 100) -> dict[str, int]:
    """Send the scheduled emails that are due, through the checks again (steps 3-11).

    A suppression or circuit failure that appeared meanwhile marks the email `blocked`; a
    full hourly limit or a throttled recipient leaves it scheduled for the next run.
    """
    runtime = get_runtime()
    with runtime.sessions() as session:
        due = session.scalars(
            select(EmailExecution.id)
            .where(
                EmailExecution.status == "scheduled", EmailExecution.scheduled_for <= clock.utcnow()
            )
            .order_by(EmailExecution.scheduled_for)
            .limit(limit)
        ).all()
    counts = {"due": len(due), "sent": 0, "failed": 0, "blocked": 0, "deferred": 0, "skipped": 0}
    for email_id in due:
        counts[_send_scheduled(runtime, email_id)] += 1
    return counts


def _send_scheduled(runtime: Runtime, email_id: str) -> str:
    with runtime.sessions() as session:
        row = session.get(EmailExecution, email_id)
        if row is None or row.status != "scheduled":
            return "skipped"
        workspace = _workspace_view(session, row.workspace_id)
        circuits = circuit_state(session, row.workspace_id, row.circuit_execution_id)
    try:
        asset = FinalAsset(
            subject=row.subject,
            preheader=row.preheader,
            html_body=row.html_body,
            text_body=row.text_body,
            cta_url=row.cta_url,
            tags=row.tags,
        )
        args = SendEmailArgs(
            workspace_id=row.workspace_id,
            client_id=row.client_id,
            circuit_execution_id=row.circuit_execution_id,
            recipient=row.recipient,
            final_asset=asset,
            cc=row.cc,
            bcc=row.bcc,
            attachments=row.attachments,
        )
        to, copies, blind, files = _check_inputs(runtime, args)
        asset, digest = _approved_asset(circuits, asset)
        send = _Send(row.id, args, to, copies, blind, files, asset, digest, workspace, circuits)
        if not _claim_scheduled(runtime, send):
            return "skipped"
    except ToolFailure as failure:
        if failure.code in (ErrorCode.RATE_LIMIT_EXCEEDED, ErrorCode.RECIPIENT_THROTTLED):
            return "deferred"
        with runtime.sessions() as session, session.begin():
            session.execute(
                update(EmailExecution)
                .where(EmailExecution.id == email_id, EmailExecution.status == "scheduled")
                .values(
                    status="blocked",
                    error_code=failure.code.value,
                    last_error=failure.message,
                    updated_at=clock.utcnow(),
                )
            )
        log.info(
            "scheduled email blocked",
            extra={"email_id": email_id, "error_code": failure.code.value},
        )
        return "blocked"
    result = _deliver(runtime, send)
    return "sent" if result["status"] == "sent" else "failed"


def _claim_scheduled(runtime: Runtime, send: _Send) -> bool:
    """Move a due email from scheduled to sending, if policy and limits allow and no other
    worker took it first."""
    with runtime.sessions() as session, session.begin():
        workspace = lock_workspace(session, send.workspace.id)
        if workspace is None:
            raise ToolFailure(ErrorCode.UNKNOWN_WORKSPACE, "no such workspace")
        _check_policy(runtime, session, send, workspace, limits=True)
        now = clock.utcnow()
        claimed = session.execute(
            update(EmailExecution)
            .where(EmailExecution.id == send.email_id, EmailExecution.status == "scheduled")
            .values(status="sending", reserved_at=now, updated_at=now)
        )
        return claimed.rowcount == 1


def _check_policy(
    runtime: Runtime, session: Session, send: _Send, workspace: Workspace, *, limits: bool
) -> None:
    """Suppression, and (when sending now) the recipient throttle and the hourly limit."""
    settings = runtime.settings
    entry = active_suppression(
        session, workspace.id, send.keys, bounce_days=settings.bounce_suppression_days
    )
    if entry is not None:
        detail = f"{entry.reason}_suppressed" if entry.reason != "bounced" else "bounced_suppressed"
        raise ToolFailure(
            ErrorCode.SUPPRESSED,
            f"Recipient validation failed: {detail}",
            reason=entry.reason,
            email=entry.email,
        )
    if not limits:
        return
    now = clock.utcnow()
    if settings.recipient_throttle_seconds > 0:
        recent = session.scalar(
            select(EmailExecution.id)
            .where(
                EmailExecution.workspace_id == workspace.id,
                EmailExecution.recipient_key == send.to.key,
                EmailExecution.reserved_at
                >= now - timedelta(seconds=settings.recipient_throttle_seconds),
            )
            .limit(1)
        )
        if recent is not None:
            raise ToolFailure(
                ErrorCode.RECIPIENT_THROTTLED,
                f"Recipient validation failed: recipient_throttled (one email per "
                f"{settings.recipient_throttle_seconds} s per recipient)",
                retry_after_seconds=settings.recipient_throttle_seconds,
            )
    limit = workspace.rate_limit_per_hour or settings.rate_limit_per_hour
    used = session.scalar(
        select(func.count())
        .select_from(EmailExecution)
        .where(
            EmailExecution.workspace_id == workspace.id,
            EmailExecution.reserved_at >= now - timedelta(hours=1),
        )
    )
    if (used or 0) >= limit:
        raise ToolFailure(
            ErrorCode.RATE_LIMIT_EXCEEDED,
            f"Recipient validation failed: rate_limit_exceeded ({limit} emails per hour)",
            limit=limit,
        )


def _outgoing(runtime: Runtime, send: _Send) -> OutgoingEmail:
    workspace = send.workspace
    token = runtime.tokens.make(workspace.id, send.to.key, send.email_id)
    https_link = f"{runtime.settings.public_base_url}/api/email/unsubscribe?token={token}"
    mailto = runtime.settings.unsubscribe_mailto or workspace.sender_email
    content = render_email(
        send.asset,
        postal_address=workspace.postal_address,
        sender_name=workspace.sender_name,
        unsubscribe_url=https_link,
    )
    return OutgoingEmail(
        email_id=send.email_id,
        workspace_id=workspace.id,
        idempotency_key=f"{workspace.id}:{send.args.circuit_execution_id}:{send.to.key}",
        message_id=f"<{send.email_id}@{workspace.sender_email.rpartition('@')[2]}>",
        sender_email=workspace.sender_email,
        sender_name=workspace.sender_name,
        to=_wire(send.to),
        cc=tuple(_wire(a) for a in send.cc),
        bcc=tuple(_wire(a) for a in send.bcc),
        subject=send.asset.subject,
        html=content.html,
        text=content.text,
        headers={
            "List-Unsubscribe": f"<{https_link}>, <mailto:{mailto}?subject=unsubscribe-{token}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        },
        tags=tuple(send.asset.tags),
        attachments=send.attachments,
    )


def _deliver(runtime: Runtime, send: _Send) -> dict[str, Any]:
    """Render, hand over, record. The row already says `sending`, so a crash leaves a trace."""
    try:
        outcome = runtime.delivery.deliver(_outgoing(runtime, send))
    except Exception as error:
        _record(
            runtime,
            send,
            DeliveryOutcome(sent=False, last_error=f"internal error: {type(error).__name__}"),
        )
        raise
    row = _record(runtime, send, outcome)
    if outcome.sent:
        log.info("email sent", extra=_log_fields(row))
        return _row_result(row, send.circuits, message=f"Email sent via {row.provider}")
    log.error("all providers failed", extra=_log_fields(row))
    return _row_result(
        row,
        send.circuits,
        message="Sending failed on every provider",
        error={"code": ErrorCode.ALL_PROVIDERS_FAILED.value, "message": outcome.last_error},
    )


def _record(runtime: Runtime, send: _Send, outcome: DeliveryOutcome) -> EmailExecution:
    now = clock.utcnow()
    with runtime.sessions() as session, session.begin():
        values: dict[str, Any] = {
            "status": "sent" if outcome.sent else "failed",
            "sent": outcome.sent,
            "provider": outcome.provider
            or (outcome.attempts[-1].provider if outcome.attempts else None),
            "provider_message_id": outcome.provider_message_id,
            "sent_at": now if outcome.sent else None,
            "attempt_number": len(outcome.attempts),
            "retry_count": outcome.retry_count,
            "last_error": outcome.last_error,
            "error_code": None if outcome.sent else ErrorCode.ALL_PROVIDERS_FAILED.value,
            "updated_at": now,
        }
        session.execute(
            update(EmailExecution).where(EmailExecution.id == send.email_id).values(**values)
        )
        session.add_all(
            DeliveryAttempt(
                id=str(uuid.uuid4()),
                execution_id=send.email_id,
                workspace_id=send.workspace.id,
                provider=attempt.provider,
                attempt_number=attempt.attempt_number,
                outcome=attempt.outcome,
                status_code=attempt.status_code,
                error=attempt.error,
                latency_ms=attempt.latency_ms,
                created_at=now,
            )
            for attempt in outcome.attempts
        )
        if outcome.sent:
            session.add(
                EmailMetrics(
                    id=str(uuid.uuid4()),
                    workspace_id=send.workspace.id,
                    execution_id=send.email_id,
                    circuit_execution_id=send.args.circuit_execution_id,
                    provider_message_id=outcome.provider_message_id,
                    provider=outcome.provider,
                    created_at=now,
                )
            )
        row = session.get(EmailExecution, send.email_id)
        assert row is not None
        return row


def _log_fields(row: EmailExecution) -> dict[str, Any]:
    return {
        "email_id": row.id,
        "workspace_id": row.workspace_id,
        "provider": row.provider,
        "status": row.status,
    }


def _execution_result(row: EmailExecution) -> dict[str, Any] | None:
    if row.attempt_number == 0:
        return None
    return {
        "sent": row.sent,
        "provider": row.provider,
        "provider_message_id": row.provider_message_id,
        "sent_at": _iso(row.sent_at),
        "retry_count": row.retry_count,
        "attempts": row.attempt_number,
    }


def _row_result(
    row: EmailExecution,
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
        result["scheduled_for"] = _iso(row.scheduled_for)
    execution = _execution_result(row)
    if execution is not None:
        result["execution_result"] = execution
    if circuits is not None:
        result["circuit_validation"] = circuits.as_dict()
    if error is not None:
        result["error"] = error
    return result


def _duplicate_result(row: EmailExecution, circuits: CircuitState | None) -> dict[str, Any]:
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
        "recipient": arguments.get("recipient"),
        "workspace_id": arguments.get("workspace_id"),
        "circuit_execution_id": arguments.get("circuit_execution_id"),
        "error": failure.error_dict(),
    }
    if circuits is not None:
        result["circuit_validation"] = circuits.as_dict()
    return result
