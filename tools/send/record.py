"""Step 5: the outcome in the audit trail, in one transaction (one per batch of stored sends).

The execution row takes the outcome (provider, message id, sent_at, retries, attempts, last
error); every attempt gets a row; a sent email gets its engagement-metrics row; provider
health feeds the circuit breakers; and a total failure gets CX08's decision (reschedule once,
or escalate), which sets the row's status.

The commit does not wait for the disk (`begin_unsynced`), so a send waits for the disk once,
at its reservation. A power cut may lose this record, never the reservation: the row then
stays `sending`, and the stalled-send sweep escalates it as unconfirmed (nothing is resent).
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from persistence import ExecutionStatus, begin_unsynced
from tools import clock
from tools.breakers import record_provider_health
from tools.errors import ErrorCode
from tools.providers.chain import DeliveryOutcome
from tools.runtime import Runtime
from tools.self_correction import Decision, decide_after_failure
from tools.send import queries, reserve
from tools.send.reserve import Execution, Reserved


@dataclass(frozen=True)
class Recorded:
    """The execution as recorded, and CX08's decision when the delivery failed."""

    execution: Execution
    decision: Decision | None


def record(
    runtime: Runtime,
    reserved: Reserved,
    outcome: DeliveryOutcome,
    error_code: ErrorCode | None = None,
) -> Recorded:
    """Store `outcome` for the reserved send (`error_code` overrides the one the outcome
    implies: an internal error, say). Database errors propagate; nothing is then recorded."""
    return record_batch(runtime, [(reserved, outcome, error_code)])[0]


def record_batch(
    runtime: Runtime,
    outcomes: list[tuple[Reserved, DeliveryOutcome, ErrorCode | None]],
    release: Sequence[Execution] = (),
) -> list[Recorded]:
    """`record` for several sends in one transaction (a batch of stored sends), which also
    gives back the claimed sends of the batch never started (`reserve.release`): all of it
    is written, or, when a database error propagates, none."""
    now = clock.utcnow()
    with begin_unsynced(runtime.engine) as conn:
        recorded = [
            _record_one(conn, runtime, reserved, outcome, error_code, now)
            for reserved, outcome, error_code in outcomes
        ]
        reserve.release(conn, release, now)
    return recorded


def _record_one(
    conn: Connection,
    runtime: Runtime,
    reserved: Reserved,
    outcome: DeliveryOutcome,
    error_code: ErrorCode | None,
    now: datetime,
) -> Recorded:
    execution = reserved.execution
    values = _outcome_values(execution, outcome, error_code, now)
    decision = None
    if not outcome.sent:
        decision = decide_after_failure(
            conn,
            runtime.settings,
            outcome,
            workspace_id=execution.workspace_id,
            execution_id=execution.id,
            reschedule_count=execution.reschedule_count,
            now=now,
        )
        values.update(_after_decision(execution, decision))
    conn.execute(queries.UPDATE_EXECUTION, {"b_id": execution.id, **values})
    if outcome.attempts:
        _insert_attempts(conn, execution, outcome, now)
        record_provider_health(
            conn,
            runtime.settings,
            outcome,
            reserved.breakers,
            workspace_id=execution.workspace_id,
            execution_id=execution.id,
            now=now,
        )
    if outcome.sent:
        _insert_metrics(conn, execution, outcome, now)
    return Recorded(dataclasses.replace(execution, **values), decision)


def _outcome_values(
    execution: Execution, outcome: DeliveryOutcome, error_code: ErrorCode | None, now: datetime
) -> dict[str, Any]:
    if error_code is None and not outcome.sent:
        ambiguous = outcome.ambiguous
        error_code = ErrorCode.DELIVERY_UNCONFIRMED if ambiguous else ErrorCode.ALL_PROVIDERS_FAILED
    return {
        "status": ExecutionStatus.SENT,  # when not sent, CX08's decision says what it becomes
        "sent": outcome.sent,
        "provider": outcome.last_provider,
        "provider_message_id": outcome.provider_message_id,
        "sent_at": now if outcome.sent else None,
        "attempt_number": execution.attempt_number + len(outcome.attempts),
        "retry_count": outcome.retry_count,
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
    conn: Connection, execution: Execution, outcome: DeliveryOutcome, now: datetime
) -> None:
    conn.execute(
        queries.INSERT_ATTEMPTS,
        [
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
            for attempt in outcome.attempts
        ],
    )


def _insert_metrics(
    conn: Connection, execution: Execution, outcome: DeliveryOutcome, now: datetime
) -> None:
    conn.execute(
        queries.INSERT_METRICS[conn.dialect.name],
        {
            "id": str(uuid.uuid4()),
            "workspace_id": execution.workspace_id,
            "execution_id": execution.id,
            "circuit_execution_id": execution.circuit_execution_id,
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
