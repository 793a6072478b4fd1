"""One email's whole story, from the audit trail: what the circuits decided, the message as it
was handed to the providers, every attempt, CX08's decisions, engagement, the group chat that
led to it, and what operators did about it. The operator console's page of one execution."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from persistence import (
    CircuitExecutionLog,
    DeliveryAttempt,
    EmailExecution,
    EmailMetrics,
    OperatorAction,
    ProviderEvent,
)
from persistence.models import SentMessage
from tools.boundary import not_found_failure, tool_function
from tools.circuits import circuit_state
from tools.clock import iso
from tools.correction_log import actions_for
from tools.errors import ErrorCode, ToolFailure
from tools.runtime import get_runtime
from tools.schemas import KNOWN_CIRCUITS, ExecutionDetailArgs
from tools.status import engagement_dict
from tools.transcripts import get_transcripts


@tool_function(ExecutionDetailArgs, on_failure=not_found_failure)
def get_execution_detail(args: ExecutionDetailArgs) -> dict[str, Any]:
    """The execution's fields (those of `get_email_status`, and client_id, cc, bcc, tags,
    content_hash, message_id, created_at, reschedule_count, crm_context: what the CRM knew when
    it was accepted, None before the CRM context was kept), then `circuits`, `hashes`
    (`{cx06, accepted, sent, match}`), `messages` (each delivery round's message as handed
    over, oldest first), `attempts`, `self_corrections`, `engagement`, `events`, `transcripts`
    and `operator_actions`. An email of another workspace is reported as not found.

    `transcripts` holds the group-chat runs stored for this email and those of its circuit
    execution stored without one (a run that ended before it sent: each says its `email_id`).
    `events` never carry the provider's raw payload.
    """
    with get_runtime().read_sessions() as session:
        row = session.get(EmailExecution, args.email_id)
        if row is None or row.workspace_id != args.workspace_id:
            raise ToolFailure(ErrorCode.NOT_FOUND, "no such email")
        attempts = _attempts(session, row)
        messages = _messages(session, row)
        circuits = _circuits(session, row)
        cx06 = circuit_state(session, row.workspace_id, row.circuit_execution_id).generated_hash
        metrics = session.scalars(
            select(EmailMetrics).where(EmailMetrics.execution_id == row.id)
        ).first()
        corrections = actions_for(session.connection(), row.id)
        events = _events(session, row)
        actions = _operator_actions(session, row)
    return {
        **_execution_fields(row, len(attempts)),
        "circuits": circuits,
        "hashes": _hashes(cx06, row.content_hash, messages),
        "messages": messages,
        "attempts": attempts,
        "self_corrections": corrections,
        "engagement": engagement_dict(metrics),
        "events": events,
        "transcripts": _transcripts(row),
        "operator_actions": actions,
    }


def _execution_fields(row: EmailExecution, attempts: int) -> dict[str, Any]:
    return {
        "email_id": row.id,
        "found": True,
        "status": row.status.value,
        "workspace_id": row.workspace_id,
        "circuit_execution_id": row.circuit_execution_id,
        "client_id": row.client_id,
        "recipient": row.recipient,
        "cc": list(row.cc),
        "bcc": list(row.bcc),
        "subject": row.subject,
        "tags": list(row.tags),
        "content_hash": row.content_hash,
        "message_id": row.message_id,
        "provider": row.provider,
        "provider_message_id": row.provider_message_id,
        "created_at": iso(row.created_at),
        "sent_at": iso(row.sent_at),
        "scheduled_for": iso(row.scheduled_for),
        "last_updated": iso(row.updated_at),
        "delivery_attempts": attempts,
        "crm_context": row.crm_context,
        "retry_count": row.retry_count,
        "reschedule_count": row.reschedule_count,
        "last_error": row.last_error,
        "error_code": row.error_code,
    }


def _circuits(session: Session, row: EmailExecution) -> list[dict[str, Any]]:
    """Every circuit log of the execution, CX01 to CX08 (re-runs of one circuit oldest
    first); `current` marks the newest of each circuit, the one that counts."""
    logs = session.scalars(
        select(CircuitExecutionLog)
        .where(
            CircuitExecutionLog.workspace_id == row.workspace_id,
            CircuitExecutionLog.circuit_execution_id == row.circuit_execution_id,
        )
        .order_by(CircuitExecutionLog.created_at, CircuitExecutionLog.id)
    ).all()
    newest = {log.circuit_id: log.id for log in logs}
    order = {circuit: i for i, circuit in enumerate(KNOWN_CIRCUITS)}
    in_circuit_order = sorted(logs, key=lambda log: order.get(log.circuit_id, len(order)))
    return [
        {
            "circuit_id": log.circuit_id,
            "success": log.success,
            "output_hash": log.output_hash,
            "current": newest[log.circuit_id] == log.id,
            "created_at": iso(log.created_at),
        }
        for log in in_circuit_order  # sorted() is stable: re-runs stay oldest first
    ]


def _hashes(cx06: str | None, accepted: str, messages: list[dict[str, Any]]) -> dict[str, Any]:
    """CX06's hash (the binding one: its newest passed log with an output), the hash the send
    was accepted with, and that of the asset last composed. `match`: something was sent, and
    every hash there is agrees."""
    sent = messages[-1]["content_hash"] if messages else None
    match = sent is not None and all(h == sent for h in (cx06, accepted) if h is not None)
    return {"cx06": cx06, "accepted": accepted, "sent": sent, "match": match}


def _messages(session: Session, row: EmailExecution) -> list[dict[str, Any]]:
    found = session.scalars(
        select(SentMessage)
        .where(SentMessage.execution_id == row.id, SentMessage.workspace_id == row.workspace_id)
        .order_by(SentMessage.delivery_round, SentMessage.created_at)
    )
    return [
        {
            "delivery_round": message.delivery_round,
            "headers": [list(pair) for pair in message.headers],
            "text_body": message.text_body,
            "html_body": message.html_body,
            "attachments": list(message.attachments),
            "content_hash": message.content_hash,
            "created_at": iso(message.created_at),
        }
        for message in found
    ]


def _attempts(session: Session, row: EmailExecution) -> list[dict[str, Any]]:
    found = session.scalars(
        select(DeliveryAttempt)
        .where(DeliveryAttempt.execution_id == row.id)
        .order_by(DeliveryAttempt.attempt_number, DeliveryAttempt.created_at)
    )
    return [
        {
            "provider": attempt.provider,
            "attempt_number": attempt.attempt_number,
            "outcome": attempt.outcome.value,
            "status_code": attempt.status_code,
            "error": attempt.error,
            "latency_ms": attempt.latency_ms,
            "created_at": iso(attempt.created_at),
        }
        for attempt in found
    ]


def _events(session: Session, row: EmailExecution) -> list[dict[str, Any]]:
    """The provider events linked to this send (never their raw payload), oldest first."""
    found = session.execute(
        select(
            ProviderEvent.provider,
            ProviderEvent.event_type,
            ProviderEvent.kind,
            ProviderEvent.bounce_type,
            ProviderEvent.occurred_at,
            ProviderEvent.received_at,
        )
        .where(
            ProviderEvent.execution_id == row.id,
            ProviderEvent.workspace_id == row.workspace_id,
        )
        .order_by(ProviderEvent.received_at, ProviderEvent.id)
    )
    return [
        {
            "provider": event.provider,
            "event_type": event.event_type,
            "kind": event.kind,
            "bounce_type": event.bounce_type,
            "occurred_at": iso(event.occurred_at),
            "received_at": iso(event.received_at),
        }
        for event in found
    ]


def _operator_actions(session: Session, row: EmailExecution) -> list[dict[str, Any]]:
    found = session.scalars(
        select(OperatorAction)
        .where(OperatorAction.workspace_id == row.workspace_id, OperatorAction.subject == row.id)
        .order_by(OperatorAction.created_at, OperatorAction.id)
    )
    return [
        {
            "action": action.action,
            "note": action.note,
            "key": action.key_fingerprint,
            "at": iso(action.created_at),
        }
        for action in found
    ]


def _transcripts(row: EmailExecution) -> list[dict[str, Any]]:
    """This email's group-chat runs, and its circuit execution's that name no email."""
    own = get_transcripts(row.workspace_id, email_id=row.id)
    unsent = [
        transcript
        for transcript in get_transcripts(
            row.workspace_id, circuit_execution_id=row.circuit_execution_id
        )
        if transcript["email_id"] is None
    ]
    return sorted([*own, *unsent], key=lambda transcript: transcript["created_at"] or "")
