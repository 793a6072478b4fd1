"""Step 5: the outcome in the audit trail, in one transaction (one per batch of stored sends).

The execution row takes the outcome (provider, message id, sent_at, retries, attempts, last
error); every attempt gets a row; the message composed for the round gets its row as it was
handed over (`sent_messages`: headers, bodies, attachment names, the asset's content hash);
a sent email gets its engagement-metrics row; provider health feeds the circuit breakers; and
a total failure gets CX08's decision (reschedule once, or escalate), which sets the row's
status.

The commit does not wait for the disk (`begin_unsynced`), so a send waits for the disk once,
at its reservation. A power cut may lose this record, never the reservation: the row then
stays `sending`, and the stalled-send sweep escalates it as unconfirmed (nothing is resent).
"""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from persistence import ExecutionStatus, begin_unsynced
from tools import clock
from tools.addresses import address_key
from tools.breakers import record_provider_health
from tools.circuits import content_hash
from tools.errors import ErrorCode
from tools.providers.base import OutgoingEmail
from tools.providers.chain import DeliveryOutcome
from tools.providers.smtp_mime import message_headers
from tools.runtime import Runtime
from tools.self_correction import Decision, decide_after_failure
from tools.send import queries
from tools.send.reserve import Execution, Reserved


@dataclass(frozen=True)
class HandedOver:
    """One send's delivery round as its hand-over left it: the outcome, the email composed
    for it (None when composing raised), and the error code that overrides the one the
    outcome implies (an internal error, say)."""

    reserved: Reserved
    outcome: DeliveryOutcome
    email: OutgoingEmail | None
    error_code: ErrorCode | None = None

    @property
    def reached_providers(self) -> bool:
        """Whether the composed email was, or may have been, handed to a provider: not when
        every provider was skipped (breakers open), and nothing left the service."""
        return self.email is not None and bool(self.outcome.attempts or self.outcome.ambiguous)


@dataclass(frozen=True)
class Recorded:
    """The execution as recorded, and CX08's decision when the delivery failed."""

    execution: Execution
    decision: Decision | None


def record(runtime: Runtime, handed: HandedOver) -> Recorded:
    """Store what became of one hand-over. Database errors propagate; nothing is then
    recorded."""
    return record_batch(runtime, [handed])[0]


def record_batch(runtime: Runtime, handed: list[HandedOver]) -> list[Recorded]:
    """`record` for several sends in one transaction (a batch of stored sends): all of them
    are written, or, when a database error propagates, none."""
    now = clock.utcnow()
    with begin_unsynced(runtime.engine) as conn:
        decided = [
            _values_after(conn, runtime, h.reserved.execution, h.outcome, h.error_code, now)
            for h in handed
        ]
        # Each kind of row is written for the whole batch by one statement: on PostgreSQL
        # that is one round trip, not one per email (a third of a batched send's database
        # time: bench/queue_drain.py).
        _update_executions(conn, [h.reserved.execution.id for h in handed], decided)
        _insert_attempts(conn, [(h.reserved.execution, h.outcome) for h in handed], now)
        _insert_messages(conn, [h for h in handed if h.reached_providers], now)
        for h in handed:
            _record_health(conn, runtime, h.reserved, h.outcome, now)
        # A hard bounce at hand-over is counted and suppressed as a bounce webhook's is.
        counted = [h for h in handed if h.outcome.sent or h.outcome.recipient_rejected]
        _insert_metrics(conn, [(h.reserved.execution, h.outcome) for h in counted], now)
        bounced = [h.reserved.execution for h in counted if h.outcome.recipient_rejected]
        _suppress_hard_bounces(conn, bounced, now)
    return [
        Recorded(dataclasses.replace(h.reserved.execution, **values), decision)
        for h, (values, decision) in zip(handed, decided, strict=True)
    ]


def _values_after(
    conn: Connection,
    runtime: Runtime,
    execution: Execution,
    outcome: DeliveryOutcome,
    error_code: ErrorCode | None,
    now: datetime,
) -> tuple[dict[str, Any], Decision | None]:
    """The execution's new values, and CX08's decision when nothing was delivered."""
    values = _outcome_values(execution, outcome, error_code, now)
    if outcome.sent:
        return values, None
    if outcome.recipient_rejected:  # a hard bounce cannot succeed later: CX08 has no say
        return {**values, "status": ExecutionStatus.BLOCKED}, None
    decision = decide_after_failure(
        conn,
        runtime.settings,
        outcome,
        workspace_id=execution.workspace_id,
        execution_id=execution.id,
        reschedule_count=execution.reschedule_count,
        now=now,
    )
    return {**values, **_after_decision(execution, decision)}, decision


def _update_executions(
    conn: Connection, ids: list[str], decided: list[tuple[dict[str, Any], Decision | None]]
) -> None:
    # One statement per set of columns changed (a reschedule changes more than a send).
    by_columns: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for email_id, (values, _) in zip(ids, decided, strict=True):
        by_columns.setdefault(tuple(values), []).append({"b_id": email_id, **values})
    for rows in by_columns.values():
        conn.execute(queries.UPDATE_EXECUTION, rows)


def _record_health(
    conn: Connection, runtime: Runtime, reserved: Reserved, outcome: DeliveryOutcome, now: datetime
) -> None:
    if outcome.attempts:
        record_provider_health(
            conn,
            runtime.settings,
            outcome,
            reserved.breakers,
            workspace_id=reserved.execution.workspace_id,
            execution_id=reserved.execution.id,
            now=now,
        )


def _outcome_values(
    execution: Execution, outcome: DeliveryOutcome, error_code: ErrorCode | None, now: datetime
) -> dict[str, Any]:
    if error_code is None and outcome.recipient_rejected:
        error_code = ErrorCode.RECIPIENT_REJECTED
    elif error_code is None and not outcome.sent:
        ambiguous = outcome.ambiguous
        error_code = ErrorCode.DELIVERY_UNCONFIRMED if ambiguous else ErrorCode.ALL_PROVIDERS_FAILED
    return {
        "status": ExecutionStatus.SENT,  # when not sent, CX08's decision says what it becomes
        "sent": outcome.sent,
        "provider": outcome.last_provider,
        "provider_message_id": outcome.provider_message_id,
        "sent_at": now if outcome.sent else None,
        "attempt_number": execution.attempt_number + len(outcome.attempts),
        "retry_count": execution.retry_count + outcome.retry_count,  # over every round
        "last_error": outcome.last_error,
        "error_code": None if error_code is None else error_code.value,
        "updated_at": now,
    }


def _after_decision(execution: Execution, decision: Decision) -> dict[str, Any]:
    if decision.status is not ExecutionStatus.SCHEDULED:
        return {"status": decision.status}
    # Rescheduled: the slot in the hourly limit is given back; the worker takes a new one.
    return {
        "status": decision.status,
        "scheduled_for": decision.scheduled_for,
        "reserved_at": None,
        "reschedule_count": execution.reschedule_count + 1,
    }


def _insert_attempts(
    conn: Connection, delivered: list[tuple[Execution, DeliveryOutcome]], now: datetime
) -> None:
    rows = [
        {
            "id": str(uuid.uuid4()),
            "execution_id": execution.id,
            "workspace_id": execution.workspace_id,
            "provider": attempt.provider,
            "attempt_number": attempt.attempt_number,
            "outcome": attempt.outcome,
            "status_code": attempt.status_code,
            "error": attempt.error,
            "latency_ms": attempt.latency_ms,
            "created_at": now,
        }
        for execution, outcome in delivered
        for attempt in outcome.attempts
    ]
    if rows:
        conn.execute(queries.INSERT_ATTEMPTS, rows)


def _insert_messages(conn: Connection, handed: list[HandedOver], now: datetime) -> None:
    rows = [_message_row(h.reserved, h.email, now) for h in handed if h.email is not None]
    if rows:
        conn.execute(queries.INSERT_MESSAGES, rows)


def _message_row(reserved: Reserved, email: OutgoingEmail, now: datetime) -> dict[str, Any]:
    execution = reserved.execution
    return {
        "id": str(uuid.uuid4()),
        "execution_id": execution.id,
        "workspace_id": execution.workspace_id,
        "delivery_round": execution.reschedule_count,  # as composed: before any reschedule
        "headers": [[name, value] for name, value in message_headers(email)],
        "text_body": email.content.text,
        "html_body": email.content.html,
        "attachments": [
            {"filename": a.filename, "content_type": a.content_type, "size": len(a.data)}
            for a in email.attachments
        ],
        # Of the asset composed (not the row's stored hash): what the console sets beside
        # CX06's.
        "content_hash": content_hash(reserved.asset),
        "created_at": now,
    }


def _insert_metrics(
    conn: Connection, sent: list[tuple[Execution, DeliveryOutcome]], now: datetime
) -> None:
    rows = [
        {
            "id": str(uuid.uuid4()),
            "workspace_id": execution.workspace_id,
            "execution_id": execution.id,
            "circuit_execution_id": execution.circuit_execution_id,
            "provider_message_id": outcome.provider_message_id,
            "provider": outcome.provider,
            "delivered": False,
            "bounced": outcome.recipient_rejected,
            "bounce_type": "hard" if outcome.recipient_rejected else None,
            "bounced_at": now if outcome.recipient_rejected else None,
            "opened": False,
            "clicked": False,
            "unsubscribed": False,
            "complained": False,
            "created_at": now,
        }
        for execution, outcome in sent
    ]
    if rows:
        conn.execute(queries.INSERT_METRICS[conn.dialect.name], rows)


def _suppress_hard_bounces(conn: Connection, bounced: list[Execution], now: datetime) -> None:
    rows = [
        {
            "id": str(uuid.uuid4()),
            "workspace_id": execution.workspace_id,
            "email": address_key(execution.recipient),
            "reason": "bounced",
            "bounce_type": "hard",
            "suppressed_at": now,
            "created_at": now,
        }
        for execution in bounced
    ]
    if rows:
        conn.execute(queries.UPSERT_SUPPRESSION[conn.dialect.name], rows)
