"""CX08's circuit breaker per provider: a provider that keeps failing is skipped for a while.

A provider with `breaker_failure_threshold` failures that were its own fault (see
`ProviderError.provider_fault`) within `breaker_window_seconds` is skipped for
`breaker_cooldown_seconds`. After that the next send tries it again, and its answer closes the
breaker or opens it for another cool-down. The state is in the database (`provider_breakers`),
so every process skips the same providers; each change is logged as a CX08 action.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, insert, select, update
from sqlalchemy.exc import IntegrityError

from persistence import AttemptOutcome, CorrectionAction, ProviderBreaker
from settings import Settings
from tools.correction_log import attempt_summary, log_action
from tools.providers.chain import AttemptRecord, DeliveryOutcome

_breakers = ProviderBreaker.__table__

OPEN_BREAKERS = select(_breakers.c.provider, _breakers.c.open_until).where(
    _breakers.c.state == "open"
)


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

    `breakers` are the ones open when the send began. The common case (no failure, no breaker
    open) writes nothing.
    """
    for provider in dict.fromkeys(a.provider for a in outcome.attempts):
        attempts = [a for a in outcome.attempts if a.provider == provider]
        faults = [a for a in attempts if a.provider_fault]
        succeeded = any(a.outcome is AttemptOutcome.SENT for a in attempts)
        if succeeded and provider in breakers:
            _close(conn, provider, attempts, workspace_id, execution_id, now)
        elif faults:
            _count_faults(conn, settings, provider, faults, workspace_id, execution_id, now)


def _close(
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
    log_action(
        conn,
        workspace_id,
        execution_id,
        CorrectionAction.CLOSE_BREAKER,
        f"{provider} delivered again after its cool-down; it is back in the chain",
        {"provider": provider, "attempts": [attempt_summary(a) for a in attempts]},
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
    failures, started = row.failures, row.window_started_at
    if started is None or (now - started).total_seconds() > settings.breaker_window_seconds:
        failures, started = 0, now
    failures += len(faults)
    values: dict[str, Any] = {"failures": failures, "window_started_at": started, "updated_at": now}
    opened = _opening(settings, provider, row, failures, now)
    if opened is not None:
        action, reason = opened
        cooldown = timedelta(seconds=settings.breaker_cooldown_seconds)
        values.update(state="open", open_until=now + cooldown, failures=0, window_started_at=None)
        inputs = {
            "provider": provider,
            "failures_in_window": failures,
            "window_seconds": settings.breaker_window_seconds,
            "threshold": settings.breaker_failure_threshold,
            "cooldown_seconds": settings.breaker_cooldown_seconds,
            "last_failures": [attempt_summary(a) for a in faults],
        }
        log_action(conn, workspace_id, execution_id, action, reason, inputs, now)
    conn.execute(update(_breakers).where(_breakers.c.provider == provider).values(**values))


def _opening(
    settings: Settings, provider: str, row: Any, failures: int, now: datetime
) -> tuple[CorrectionAction, str] | None:
    """Whether these failures open the breaker (or re-open it after a failed probe), and why."""
    cooldown = timedelta(seconds=settings.breaker_cooldown_seconds)
    if row.state == "open" and row.open_until is not None and row.open_until <= now:
        reason = f"{provider} failed again after its cool-down; skipped for another {cooldown}"
        return CorrectionAction.REOPEN_BREAKER, reason
    if row.state != "open" and failures >= settings.breaker_failure_threshold:
        window = timedelta(seconds=settings.breaker_window_seconds)
        reason = (
            f"{provider} failed {failures} times within {window} "
            f"(threshold {settings.breaker_failure_threshold}); skipped for {cooldown}"
        )
        return CorrectionAction.OPEN_BREAKER, reason
    return None


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
