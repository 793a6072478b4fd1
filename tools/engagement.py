"""Engagement from provider webhooks: store each verified event once, fold it into the
per-email metrics, and suppress addresses that hard-bounced, complained or unsubscribed.

An event is linked to its send by the `email_id` the send put into the message, else by the
provider's message id, and only ever to a send of the workspace the event names. One that
matches no send yet (its webhook overtook the send's own record) is stored unlinked, with no
workspace; `fold_waiting_events` (run by the worker, and by `collect_metrics` for one
workspace) links and folds it later.

Metrics are flags with the time each first happened, so counting an event twice changes
nothing; the dedup key keeps the audit trail to one row per event.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any

from sqlalchemy import and_, case, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from persistence import EmailExecution, EmailMetrics, ProviderEvent, all_workspaces
from tools import clock
from tools.addresses import address_key
from tools.boundary import tool_function
from tools.engagement_evaluation import evaluate_collected
from tools.errors import ErrorCode, ToolFailure, failure_result
from tools.reputation import check_reputation
from tools.reputation import evaluate as evaluate_reputation
from tools.runtime import get_runtime
from tools.schemas import ReceiveWebhookArgs, WorkspaceArgs
from tools.status import ENGAGEMENT
from tools.suppression import add_suppression
from tools.webhooks.events import EngagementEvent

log = logging.getLogger(__name__)

# What each kind adds to the suppression list (a hard bounce adds "bounced"; a soft one nothing).
_SUPPRESSES = {"complained": "complained", "unsubscribed": "unsubscribed"}
# How long an unlinked event keeps being matched against new sends.
WAITING_WINDOW = timedelta(days=7)


def _refused(arguments: Mapping[str, Any], failure: ToolFailure) -> dict[str, Any]:
    log.warning(
        "webhook refused",
        extra={"provider": arguments.get("provider"), "error_code": failure.code.value},
    )
    return failure_result(failure)


@tool_function(ReceiveWebhookArgs, on_failure=_refused)
def receive_webhook(args: ReceiveWebhookArgs) -> dict[str, Any]:
    """Verify one webhook request from `provider` ("sendgrid" or "resend") and record it.

    Nothing is stored unless the signature holds and the body parses. A redelivered event is
    counted in `duplicates` and changes nothing; an item of a signed batch that is not a
    readable event is counted in `rejected`. Returns `{success, received, stored, duplicates,
    rejected}` or `{success: false, error}` with code `invalid_signature`, `invalid_input` or
    `webhook_not_configured`.
    """
    runtime = get_runtime()
    webhook = runtime.webhooks.get(args.provider)
    if webhook is None:
        raise ToolFailure(
            ErrorCode.WEBHOOK_NOT_CONFIGURED,
            f"{args.provider} webhooks are not configured on this server",
        )
    lowered = {name.lower(): value for name, value in args.headers.items()}
    events, rejected = webhook.read(lowered, args.body)
    # Whose events these are is found by matching them to sends: across every workspace.
    with all_workspaces(), runtime.sessions.begin() as session:
        stored = _store(session, events)
        _fold(session, [(row, ex) for row in stored if (ex := _send_of(session, row))])
    log.info(
        "webhook events stored",
        extra={"provider": args.provider, "stored": len(stored), "rejected": rejected},
    )
    return {
        "success": True,
        "received": len(events) + rejected,
        "stored": len(stored),
        "duplicates": len(events) - len(stored),
        "rejected": rejected,
    }


def fold_waiting_events(workspace_id: str | None = None, limit: int = 1000) -> int:
    """Link and fold the stored events of the last 7 days whose send is now known (of one
    workspace, or all; at most about `limit` per call). Returns how many were folded.

    Over every workspace's rows even for one: an event waiting for its send belongs to no
    workspace yet (the query limits itself to the sends of `workspace_id`)."""
    runtime = get_runtime()
    same_send = or_(
        EmailExecution.id == ProviderEvent.email_ref,
        and_(
            EmailExecution.provider == ProviderEvent.provider,
            EmailExecution.provider_message_id == ProviderEvent.provider_message_id,
        ),
    )
    by_email_id = case((EmailExecution.id == ProviderEvent.email_ref, 0), else_=1)
    query = (
        select(ProviderEvent, EmailExecution)
        .join(EmailExecution, same_send)
        .where(
            ProviderEvent.execution_id.is_(None),
            ProviderEvent.received_at >= clock.utcnow() - WAITING_WINDOW,
            or_(
                ProviderEvent.workspace_claim.is_(None),
                ProviderEvent.workspace_claim == EmailExecution.workspace_id,
            ),
        )
        # As on arrival, the email_id the event names wins over the provider's message id.
        .order_by(ProviderEvent.id, by_email_id)
        .limit(limit)
        # Two passes at once (two workers) each take their own events.
        .with_for_update(of=ProviderEvent, skip_locked=True)
    )
    if workspace_id is not None:
        query = query.where(EmailExecution.workspace_id == workspace_id)
    with all_workspaces(), runtime.sessions() as session, session.begin():
        links: dict[str, tuple[ProviderEvent, EmailExecution]] = {}
        for event, execution in session.execute(query):
            links.setdefault(event.id, (event, execution))  # matched by both ids: once
        _fold(session, links.values())
    return len(links)


@tool_function(WorkspaceArgs)
def collect_metrics(args: WorkspaceArgs) -> dict[str, Any]:
    """Fold this workspace's events that arrived before their send was recorded.

    Returns `{workspace_id, metrics_collected, message}` (the number of events folded now).
    """
    folded = fold_waiting_events(args.workspace_id)
    result = {
        "success": True,
        "workspace_id": args.workspace_id,
        "metrics_collected": folded,
        "message": f"Folded {folded} waiting provider event(s) into the engagement metrics",
    }
    result["reputation"] = check_reputation(args.workspace_id)  # CX05's brand guard, judged
    if get_runtime().settings.cx07_on_collect:  # CX07's optional trigger
        result["cx07_evaluated"] = evaluate_collected(args.workspace_id)
    return result


# Locks are taken in one order -- event keys, then metrics rows, then suppression entries,
# each sorted -- so that concurrent deliveries on PostgreSQL cannot deadlock one another.


def _store(session: Session, events: list[EngagementEvent]) -> list[ProviderEvent]:
    """Insert each event not stored before; the new rows, in key order."""
    stored = []
    for event in sorted(events, key=lambda e: e.dedup_key):
        row = ProviderEvent(
            id=str(uuid.uuid4()),
            provider=event.provider,
            dedup_key=event.dedup_key,
            event_type=event.event_type,
            kind=event.kind,
            occurred_at=event.occurred_at,
            bounce_type=event.bounce_type,
            recipient=_clip(event.recipient, 320),
            email_ref=_clip(event.email_id, 64),
            workspace_claim=_clip(event.workspace_id, 64),
            provider_message_id=_clip(event.provider_message_id, 400),
            payload=event.payload,
            received_at=clock.utcnow(),
        )
        try:
            with session.begin_nested():
                session.add(row)
        except IntegrityError:
            continue  # a redelivery (or a repeat within the batch): the first copy counts
        stored.append(row)
    return stored


def _send_of(session: Session, event: ProviderEvent) -> EmailExecution | None:
    """The send this event is about, if known and of the workspace the event names."""
    execution = session.get(EmailExecution, event.email_ref) if event.email_ref else None
    if execution is None and event.provider_message_id is not None:
        execution = session.scalars(
            select(EmailExecution).where(
                EmailExecution.provider == event.provider,
                EmailExecution.provider_message_id == event.provider_message_id,
            )
        ).first()
    if execution is None or event.workspace_claim not in (None, execution.workspace_id):
        return None
    return execution


def _fold(session: Session, links: Iterable[tuple[ProviderEvent, EmailExecution]]) -> None:
    """Link each event to its send, count it in the send's metrics, then add suppressions."""
    suppressions: set[tuple[str, str, str]] = set()
    metrics_by_send: dict[str, EmailMetrics] = {}
    for event, execution in sorted(links, key=lambda link: (link[1].id, link[0].dedup_key)):
        event.workspace_id = execution.workspace_id
        event.execution_id = execution.id
        if event.kind not in ENGAGEMENT:
            continue
        if execution.id not in metrics_by_send:
            metrics_by_send[execution.id] = _locked_metrics(session, execution)
        _count(metrics_by_send[execution.id], event)
        entry = _suppression(event, execution)
        if entry is not None:
            suppressions.add(entry)
    for workspace_id, address, reason in sorted(suppressions):
        bounce_type = "hard" if reason == "bounced" else None
        add_suppression(session, workspace_id, address, reason, bounce_type)
    # A complaint or an unsubscribe moves the brand guard's rates: judged in this transaction.
    for workspace_id in sorted({w for w, _, r in suppressions if r != "bounced"}):
        evaluate_reputation(session, get_runtime().settings, workspace_id, clock.utcnow())


def _count(metrics: EmailMetrics, event: ProviderEvent) -> None:
    """Set the event's flag; keep the earliest time of each kind; a hard bounce stays hard."""
    at = event.occurred_at or event.received_at
    first = getattr(metrics, f"{event.kind}_at")
    changed = first is None or at < first
    if changed:
        setattr(metrics, event.kind, True)
        setattr(metrics, f"{event.kind}_at", at)
    if event.kind == "bounced" and metrics.bounce_type != "hard" and event.bounce_type:
        changed = changed or metrics.bounce_type != event.bounce_type
        metrics.bounce_type = event.bounce_type
    if changed:
        metrics.collected_at = clock.utcnow()


def _suppression(event: ProviderEvent, execution: EmailExecution) -> tuple[str, str, str] | None:
    """(workspace, address, reason) to suppress for this event, if any.

    Only an address the email was sent to. When the event does not say which recipient it is
    about (Resend's), only an email with one recipient can be attributed.
    """
    hard_bounce = event.kind == "bounced" and event.bounce_type == "hard"
    reason = "bounced" if hard_bounce else _SUPPRESSES.get(event.kind)
    if reason is None:
        return None
    recipients = {execution.recipient_key, *(_key(a) for a in [*execution.cc, *execution.bcc])}
    if event.recipient is not None:
        address = _key(event.recipient)
    else:
        address = execution.recipient_key if execution.recipient_count == 1 else None
    if address is None or address not in recipients:
        log.warning(
            "event not attributable to one recipient; counted, not suppressed",
            extra={"email_id": execution.id, "provider": event.provider},
        )
        return None
    return execution.workspace_id, address, reason


def _locked_metrics(session: Session, execution: EmailExecution) -> EmailMetrics:
    """The send's metrics row, locked for this transaction (created if it has none yet)."""
    lookup = select(EmailMetrics).where(EmailMetrics.execution_id == execution.id).with_for_update()
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


def _key(address: str) -> str | None:
    try:
        return address_key(address)
    except ToolFailure:
        return None


def _clip(value: str | None, limit: int) -> str | None:
    return value[:limit] if value else None
