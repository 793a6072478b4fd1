"""Engagement from provider webhooks: store each verified event once, fold it into the
per-email metrics, and suppress addresses that hard-bounced, complained or unsubscribed.

An event is linked to its send by the `email_id` the send put into the message (checked
against the workspace it also carries), else by the provider's message id. One that matches
no send yet (its webhook overtook the send's own record) is stored unlinked, with no
workspace, and `collect_metrics` links and folds it later.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from persistence import EmailExecution, EmailMetrics, ProviderEvent
from tools import clock
from tools.errors import ErrorCode, ToolFailure, failure_result
from tools.runtime import get_runtime
from tools.schemas import WorkspaceArgs, parse
from tools.status import ENGAGEMENT
from tools.suppression import add_suppression, address_key
from tools.webhooks.events import EngagementEvent

log = logging.getLogger(__name__)

# What each kind adds to the suppression list (a soft bounce adds nothing).
_SUPPRESSES = {"complained": "complained", "unsubscribed": "unsubscribed"}


def receive_webhook(provider: str, headers: Mapping[str, str], body: bytes) -> dict[str, Any]:
    """Verify one webhook request from `provider` ("sendgrid" or "resend") and record it.

    Nothing is stored unless the signature holds and the body parses. A redelivered event is
    counted in `duplicates` and changes nothing. Returns `{success, received, stored,
    duplicates}` or `{success: false, error}` with code `invalid_signature`, `invalid_input`
    or `webhook_not_configured`.
    """
    runtime = get_runtime()
    try:
        webhook = runtime.webhooks.get(provider)
        if webhook is None:
            raise ToolFailure(
                ErrorCode.WEBHOOK_NOT_CONFIGURED,
                f"{provider} webhooks are not configured on this server",
            )
        events = webhook.read({name.lower(): value for name, value in headers.items()}, body)
        with runtime.sessions() as session, session.begin():
            stored = [_store(session, event) for event in events]
    except ToolFailure as failure:
        log.warning("webhook refused", extra={"provider": provider, "error_code": failure.code})
        return failure_result(failure)
    kept = sum(1 for row in stored if row is not None)
    log.info("webhook events stored", extra={"provider": provider, "stored": kept})
    return {
        "success": True,
        "received": len(events),
        "stored": kept,
        "duplicates": len(events) - kept,
    }


def collect_metrics(workspace_id: str) -> dict[str, Any]:
    """Link and fold this workspace's events that arrived before their send was recorded,
    and stamp the workspace's metrics as collected. Returns `{workspace_id,
    metrics_collected, message}` (the number of events folded now)."""
    runtime = get_runtime()
    try:
        args = parse(WorkspaceArgs, {"workspace_id": workspace_id})
    except ToolFailure as failure:
        return failure_result(failure)
    folded = 0
    with runtime.sessions() as session, session.begin():
        waiting = session.execute(
            select(ProviderEvent, EmailExecution)
            .join(
                EmailExecution,
                or_(
                    EmailExecution.id == ProviderEvent.email_ref,
                    and_(
                        EmailExecution.provider == ProviderEvent.provider,
                        EmailExecution.provider_message_id == ProviderEvent.provider_message_id,
                    ),
                ),
            )
            .where(
                ProviderEvent.execution_id.is_(None),
                EmailExecution.workspace_id == args.workspace_id,
            )
            .order_by(ProviderEvent.received_at)
        ).all()
        for event, execution in waiting:
            if event.execution_id is None:  # an event matching by both ids comes twice
                _fold(session, execution, event)
                folded += 1
        now = clock.utcnow()
        for metrics in session.scalars(
            select(EmailMetrics).where(EmailMetrics.workspace_id == args.workspace_id)
        ):
            metrics.collected_at = now
    return {
        "success": True,
        "workspace_id": args.workspace_id,
        "metrics_collected": folded,
        "message": f"Folded {folded} waiting provider event(s) into the engagement metrics",
    }


def _store(session: Session, event: EngagementEvent) -> ProviderEvent | None:
    """Insert the event and fold it if its send is known; None when it was already stored."""
    row = ProviderEvent(
        id=str(uuid.uuid4()),
        provider=event.provider,
        dedup_key=event.dedup_key,
        event_type=event.event_type,
        kind=event.kind,
        occurred_at=event.occurred_at,
        bounce_type=event.bounce_type,
        recipient=(event.recipient or "")[:320] or None,
        email_ref=(event.email_id or "")[:64] or None,
        provider_message_id=(event.provider_message_id or "")[:400] or None,
        payload=event.payload,
        received_at=clock.utcnow(),
    )
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError:
        return None  # a redelivery: the first copy was stored and counted
    execution = _execution_for(session, row, claimed_workspace=event.workspace_id)
    if execution is not None:
        _fold(session, execution, row)
    return row


def _execution_for(
    session: Session, event: ProviderEvent, claimed_workspace: str | None = None
) -> EmailExecution | None:
    if event.email_ref is not None:
        execution = session.get(EmailExecution, event.email_ref)
        if execution is not None and claimed_workspace in (None, execution.workspace_id):
            return execution
    if event.provider_message_id is not None:
        return session.scalars(
            select(EmailExecution).where(
                EmailExecution.provider == event.provider,
                EmailExecution.provider_message_id == event.provider_message_id,
            )
        ).first()
    return None


def _fold(session: Session, execution: EmailExecution, event: ProviderEvent) -> None:
    """Count one event for its email: the first time of each kind is kept."""
    event.workspace_id = execution.workspace_id
    event.execution_id = execution.id
    event.folded_at = clock.utcnow()
    if event.kind not in ENGAGEMENT:
        return
    metrics = _metrics_row(session, execution)
    at = event.occurred_at or event.received_at
    first = getattr(metrics, f"{event.kind}_at")
    setattr(metrics, event.kind, True)
    if first is None or at < first:
        setattr(metrics, f"{event.kind}_at", at)
    if event.kind == "bounced" and metrics.bounce_type != "hard":
        metrics.bounce_type = event.bounce_type
    reason = "bounced" if event.bounce_type == "hard" else _SUPPRESSES.get(event.kind)
    if reason is not None:
        add_suppression(
            session,
            execution.workspace_id,
            _address(event.recipient, execution),
            reason,
            "hard" if reason == "bounced" else None,
        )


def _address(recipient: str | None, execution: EmailExecution) -> str:
    if recipient:
        try:
            return address_key(recipient)
        except ToolFailure:
            pass
    return execution.recipient_key


def _metrics_row(session: Session, execution: EmailExecution) -> EmailMetrics:
    lookup = select(EmailMetrics).where(EmailMetrics.execution_id == execution.id)
    metrics = session.scalars(lookup).first()
    if metrics is not None:
        return metrics
    metrics = EmailMetrics(
        id=str(uuid.uuid4()),
        workspace_id=execution.workspace_id,
        execution_id=execution.id,
        circuit_execution_id=execution.circuit_execution_id,
        provider_message_id=execution.provider_message_id,
        provider=execution.provider,
        created_at=clock.utcnow(),
    )
    try:
        with session.begin_nested():
            session.add(metrics)
    except IntegrityError:  # another request created it meanwhile
        metrics = session.scalars(lookup).one()
    return metrics
