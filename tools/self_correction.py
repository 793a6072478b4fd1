"""CX08 self-correction: deterministic rules over the failure record. No model is consulted.

Three rules (DESIGN.md section 6), each decision written to `self_correction_actions` with the
inputs it was taken on and the reason:
- switch provider: a provider with `breaker_failure_threshold` failures that were its own
  fault (see `ProviderError.provider_fault`) within `breaker_window_seconds` is skipped for
  `breaker_cooldown_seconds`; after that the next send tries it again, and its answer closes
  the breaker or opens it for another cool-down. The state is in the database, so every
  worker skips the same providers.
- adjust timing: a send that failed on every provider is rescheduled once, after
  `reschedule_delay_seconds`; it then goes through every check again.
- escalate: a second total failure, or a hand-over that went unanswered (it may have been
  delivered, so it is never retried), gets status `escalated` for an operator. So does a send
  whose outcome was never recorded (the process stopped during delivery): the worker finds it
  still `sending` after `stalled_send_seconds` (`escalate_stalled_sends`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError

from persistence import EmailExecution, ProviderBreaker, SelfCorrectionAction
from settings import Settings
from tools import clock
from tools.clock import iso
from tools.errors import ErrorCode, ToolFailure, email_not_found
from tools.providers.chain import AttemptRecord, DeliveryOutcome
from tools.runtime import get_runtime
from tools.schemas import SelfCorrectArgs, parse

_breakers = ProviderBreaker.__table__
_actions = SelfCorrectionAction.__table__

_executions = EmailExecution.__table__

OPEN_BREAKERS = select(_breakers.c.provider, _breakers.c.open_until).where(
    _breakers.c.state == "open"
)


@dataclass(frozen=True)
class Decision:
    """What CX08 did with a total failure: the execution's new status and why."""

    action: str  # reschedule | escalate
    status: str  # scheduled | escalated
    reason: str
    scheduled_for: datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "reason": self.reason,
            "scheduled_for": iso(self.scheduled_for),
        }


def open_breakers(conn: Connection) -> dict[str, datetime]:
    """Providers whose breaker is open, with the end of their cool-down."""
    return {provider: until for provider, until in conn.execute(OPEN_BREAKERS)}


def cooling_down(breakers: dict[str, datetime], now: datetime) -> frozenset[str]:
    """The providers to skip now; an open breaker past its cool-down lets one send probe."""
    return frozenset(name for name, until in breakers.items() if until is not None and until > now)


def record_provider_health(
    conn: Connection,
    settings: Settings,
    outcome: DeliveryOutcome,
    breakers: dict[str, datetime],
    *,
    workspace_id: str,
    execution_id: str,
    now: datetime,
) -> None:
    """Count each provider's own failures in this delivery; open or close breakers.

    The common case (no failure, no breaker open) writes nothing.
    """
    for provider in dict.fromkeys(a.provider for a in outcome.attempts):
        attempts = [a for a in outcome.attempts if a.provider == provider]
        faults = [a for a in attempts if a.provider_fault]
        succeeded = any(a.outcome == "sent" for a in attempts)
        if succeeded and provider in breakers:
            _close_breaker(conn, provider, attempts, workspace_id, execution_id, now)
        elif faults:
            _count_faults(conn, settings, provider, faults, workspace_id, execution_id, now)


def _close_breaker(
    conn: Connection,
    provider: str,
    attempts: list[AttemptRecord],
    workspace_id: str,
    execution_id: str,
    now: datetime,
) -> None:
    conn.execute(
        update(_breakers)
        .where(_breakers.c.provider == provider)
        .values(state="closed", failures=0, window_started_at=None, open_until=None, updated_at=now)
    )
    _log_action(
        conn,
        workspace_id,
        execution_id,
        "close_breaker",
        f"{provider} delivered again after its cool-down; it is back in the chain",
        {"provider": provider, "attempts": [_attempt_summary(a) for a in attempts]},
        now,
    )


def _count_faults(
    conn: Connection,
    settings: Settings,
    provider: str,
    faults: list[AttemptRecord],
    workspace_id: str,
    execution_id: str,
    now: datetime,
) -> None:
    row = _locked_breaker(conn, provider, now)
    window = timedelta(seconds=settings.breaker_window_seconds)
    cooldown = timedelta(seconds=settings.breaker_cooldown_seconds)
    failures, started = row.failures, row.window_started_at
    if started is None or now - started > window:
        failures, started = 0, now
    failures += len(faults)
    values: dict[str, Any] = {"failures": failures, "window_started_at": started, "updated_at": now}
    action = None
    if row.state == "open" and row.open_until is not None and row.open_until <= now:
        action = "reopen_breaker"
        reason = f"{provider} failed again after its cool-down; skipped for another {cooldown}"
    elif row.state != "open" and failures >= settings.breaker_failure_threshold:
        action = "open_breaker"
        reason = (
            f"{provider} failed {failures} times within {window} "
            f"(threshold {settings.breaker_failure_threshold}); skipped for {cooldown}"
        )
    if action is not None:
        values.update(state="open", open_until=now + cooldown, failures=0, window_started_at=None)
        _log_action(
            conn,
            workspace_id,
            execution_id,
            action,
            reason,
            {
                "provider": provider,
                "failures_in_window": failures,
                "window_seconds": settings.breaker_window_seconds,
                "threshold": settings.breaker_failure_threshold,
                "cooldown_seconds": settings.breaker_cooldown_seconds,
                "last_failures": [_attempt_summary(a) for a in faults],
            },
            now,
        )
    conn.execute(update(_breakers).where(_breakers.c.provider == provider).values(**values))


def _locked_breaker(conn: Connection, provider: str, now: datetime) -> Any:
    """The provider's breaker row, created closed if missing, locked until the commit."""
    statement = select(_breakers).where(_breakers.c.provider == provider)
    if conn.dialect.name != "sqlite":  # SQLite's BEGIN IMMEDIATE already serialises writers
        statement = statement.with_for_update()
    row = conn.execute(statement).first()
    if row is None:
        try:
            with conn.begin_nested():
                conn.execute(
                    insert(_breakers).values(
                        provider=provider, state="closed", failures=0, updated_at=now
                    )
                )
        except IntegrityError:
            pass  # another worker created it first; read theirs
        row = conn.execute(statement).one()
    return row


def decide_after_failure(
    conn: Connection,
    settings: Settings,
    outcome: DeliveryOutcome,
    *,
    workspace_id: str,
    execution_id: str,
    reschedule_count: int,
    now: datetime,
) -> Decision:
    """Reschedule a first total failure, escalate a second or an unanswered hand-over."""
    if outcome.ambiguous:
        decision = Decision(
            "escalate",
            "escalated",
            "the hand-over went unanswered, so the email may have been delivered; it is not "
            "sent again anywhere. An operator should check with the provider.",
        )
    elif reschedule_count == 0:
        delay = timedelta(seconds=settings.reschedule_delay_seconds)
        decision = Decision(
            "reschedule",
            "scheduled",
            f"failed on every provider; rescheduled once, in {delay}",
            now + delay,
        )
    else:
        decision = Decision(
            "escalate",
            "escalated",
            "failed on every provider again after CX08 rescheduled it; an operator should "
            "look at the providers and the message",
        )
    _log_action(
        conn,
        workspace_id,
        execution_id,
        decision.action,
        decision.reason,
        {
            "reschedule_count": reschedule_count,
            "ambiguous": outcome.ambiguous,
            "providers_skipped": outcome.skipped,
            "attempts": [_attempt_summary(a) for a in outcome.attempts],
            "last_error": outcome.last_error,
            "scheduled_for": iso(decision.scheduled_for),
        },
        now,
    )
    return decision


_STALLED = (
    select(_executions.c.id, _executions.c.workspace_id, _executions.c.reserved_at)
    .where(_executions.c.status == "sending", _executions.c.reserved_at < bindparam("cutoff"))
    .order_by(_executions.c.reserved_at, _executions.c.id)  # one lock order for all sweeps
    .limit(bindparam("limit"))
)
# Only a row still `sending`: a delivery that did finish after all keeps its own outcome, and
# of two workers sweeping at once only one escalates (and logs) each row.
_ESCALATE_STALLED = (
    update(_executions)
    .where(_executions.c.id == bindparam("b_id"), _executions.c.status == "sending")
    .values(
        status="escalated",
        error_code=ErrorCode.DELIVERY_UNCONFIRMED.value,
        last_error=bindparam("last_error"),
        updated_at=bindparam("now"),
    )
)
_STALLED_REASON = (
    "the send's outcome was never recorded (the process stopped during delivery), so the "
    "email may have been delivered; it is not sent again anywhere. An operator should check "
    "with the provider."
)


def escalate_stalled_sends(limit: int = 100) -> int:
    """Escalate sends still `sending` `stalled_send_seconds` after their reservation.

    Such a row outlived the process that was delivering it: whether the provider took the
    message is unknown, so, like an unanswered hand-over, it is escalated and never resent.
    Returns how many were escalated.
    """
    runtime = get_runtime()
    now = clock.utcnow()
    cutoff = now - timedelta(seconds=runtime.settings.stalled_send_seconds)
    escalated = 0
    with runtime.engine.begin() as conn:
        for email_id, workspace_id, reserved_at in conn.execute(
            _STALLED, {"cutoff": cutoff, "limit": limit}
        ).all():
            done = conn.execute(
                _ESCALATE_STALLED, {"b_id": email_id, "last_error": _STALLED_REASON, "now": now}
            )
            if done.rowcount != 1:
                continue
            _log_action(
                conn,
                workspace_id,
                email_id,
                "escalate",
                _STALLED_REASON,
                {
                    "reserved_at": iso(reserved_at),
                    "stalled_send_seconds": runtime.settings.stalled_send_seconds,
                },
                now,
            )
            escalated += 1
    return escalated


def _attempt_summary(attempt: AttemptRecord) -> dict[str, Any]:
    return {
        "provider": attempt.provider,
        "attempt_number": attempt.attempt_number,
        "outcome": attempt.outcome,
        "status_code": attempt.status_code,
    }


def _log_action(
    conn: Connection,
    workspace_id: str,
    execution_id: str,
    action: str,
    reason: str,
    inputs: dict[str, Any],
    now: datetime,
) -> None:
    conn.execute(
        insert(_actions).values(
            id=str(uuid.uuid4()),
            workspace_id=workspace_id,
            execution_id=execution_id,
            action=action,
            reason=reason,
            inputs=inputs,
            created_at=now,
        )
    )


def actions_for(conn: Connection, execution_id: str) -> list[dict[str, Any]]:
    """The CX08 decisions taken for one execution, oldest first."""
    rows = conn.execute(
        select(_actions.c.action, _actions.c.reason, _actions.c.inputs, _actions.c.created_at)
        .where(_actions.c.execution_id == execution_id)
        .order_by(_actions.c.created_at)
    )
    return [{"action": a, "reason": r, "inputs": i, "created_at": iso(at)} for a, r, i, at in rows]


def self_correct(email_id: str, workspace_id: str | None = None) -> dict[str, Any]:
    """The CX08 decision for one email, for the SelfCorrectionAgent.

    The send pipeline applies the rules itself when a delivery fails; this reports what was
    decided (`action`: reschedule, escalate, or none when nothing failed), with the reason and
    every decision taken for the email so far. With `workspace_id`, an email of another
    workspace is not found.
    """
    runtime = get_runtime()
    try:
        args = parse(SelfCorrectArgs, {"email_id": email_id, "workspace_id": workspace_id})
    except ToolFailure as failure:
        return email_not_found(email_id, failure)
    with runtime.engine.connect() as conn:
        row = conn.execute(
            select(
                EmailExecution.status,
                EmailExecution.workspace_id,
                EmailExecution.last_error,
                EmailExecution.scheduled_for,
            ).where(EmailExecution.id == args.email_id)
        ).first()
        if row is None or (args.workspace_id is not None and row.workspace_id != args.workspace_id):
            return email_not_found(args.email_id)
        actions = actions_for(conn, args.email_id)
    decisions = [a for a in actions if a["action"] in ("reschedule", "escalate")]
    latest = decisions[-1] if decisions else None
    return {
        "email_id": args.email_id,
        "found": True,
        "status": row.status,
        "action": latest["action"] if latest else "none",
        "reason": latest["reason"] if latest else f"no failure to correct (status {row.status})",
        "scheduled_for": iso(row.scheduled_for) if row.status == "scheduled" else None,
        "last_error": row.last_error,
        "actions": actions,
    }
