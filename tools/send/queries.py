"""The send pipeline's SQL, built once with bind parameters.

Building SQLAlchemy statements per call (and their cache keys) cost more than running them;
these are constructed at import and executed with parameters on a Core connection.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Select, bindparam, exists, func, insert, literal, select, update
from sqlalchemy.dialects import postgresql, sqlite

from persistence import (
    DeliveryAttempt,
    EmailExecution,
    EmailMetrics,
    ExecutionStatus,
    ProviderBreaker,
    Suppression,
    Workspace,
)
from persistence.models import SentMessage
from tools.reputation import sending_paused
from tools.suppression import BLOCKING_SUPPRESSION

_ws = Workspace.__table__.c
_ex = EmailExecution.__table__.c
_breakers = ProviderBreaker.__table__.c

_WORKSPACE = select(
    _ws.id,
    _ws.sender_email,
    _ws.sender_name,
    _ws.postal_address,
    _ws.rate_limit_per_hour,
    sending_paused(_ws.id).label("sending_paused"),  # read with the row: once per batch
).where(_ws.id == bindparam("workspace_id"))
# PostgreSQL: the row lock that serialises one workspace's sends. NO KEY UPDATE, not UPDATE:
# it still excludes every other send's reservation, but not the KEY SHARE lock each insert
# referencing the workspace takes (attempts, metrics), so recording one send's outcome never
# waits for another send's reservation. SQLite: BEGIN IMMEDIATE already holds the database
# write lock, and FOR UPDATE is not SQL it knows.
LOCK_WORKSPACE = {"sqlite": _WORKSPACE, "default": _WORKSPACE.with_for_update(key_share=True)}

EXISTING_SEND = (
    select(_ex.id)
    .where(
        _ex.workspace_id == bindparam("workspace_id"),
        _ex.circuit_execution_id == bindparam("circuit_execution_id"),
        _ex.recipient_key == bindparam("recipient_key"),
    )
    .limit(1)
)

# Every check a send makes after its circuits, in one round trip: an earlier send of this
# (workspace, execution, recipient); whether a suppression blocks any recipient (which one,
# and why, is read only then); recipients sent to in the workspace's last hour
# (ix_executions_rate_window, index only); recent sends to this recipient
# (ix_executions_recipient, index only); whether any provider's breaker is open (which ones is
# read only then).
_USED = (
    select(func.coalesce(func.sum(_ex.recipient_count), 0))
    .where(_ex.workspace_id == bindparam("workspace_id"), _ex.reserved_at >= bindparam("hour_ago"))
    .scalar_subquery()
)
_RECENT = (
    select(func.count())
    .where(
        _ex.workspace_id == bindparam("workspace_id"),
        _ex.recipient_key == bindparam("recipient_key"),
        _ex.reserved_at >= bindparam("throttle_since"),
    )
    .scalar_subquery()
)
_BREAKER_OPEN = exists().where(_breakers.state == "open")


def _checks(used: Any, recent: Any) -> Select[Any]:
    return select(
        EXISTING_SEND.scalar_subquery().label("existing_id"),
        exists().where(*BLOCKING_SUPPRESSION).label("suppressed"),
        used.label("used"),
        recent.label("recent"),
        _BREAKER_OPEN.label("breaker_open"),
    )


SEND_CHECKS = _checks(_USED, _RECENT)
# The same for a send that takes no slot in the limits now (a queued one being claimed took
# its slot when it was accepted; a scheduled one accepted takes it when due): the hour's count,
# a scan of the workspace's last hour and the costliest part, is left out.
SEND_CHECKS_WITHOUT_LIMITS = _checks(literal(0), literal(0))
ANY_BREAKER_OPEN = select(_BREAKER_OPEN)

INSERT_EXECUTION = insert(EmailExecution.__table__)
# Parameters named like columns become the SET clause; `b_id` picks the row.
UPDATE_EXECUTION = update(EmailExecution.__table__).where(_ex.id == bindparam("b_id"))
# A scheduled or queued row (`from_status`) changes hands (to `sending`, or `blocked`) only
# once: of two workers that both found it, one claims it.
CLAIM = update(EmailExecution.__table__).where(
    _ex.id == bindparam("b_id"), _ex.status == bindparam("from_status")
)
QUEUED = (
    select(_ex.id)
    .where(_ex.status == ExecutionStatus.QUEUED)
    .order_by(_ex.reserved_at)
    .limit(bindparam("limit"))
)
DUE = (
    select(_ex.id)
    .where(_ex.status == ExecutionStatus.SCHEDULED, _ex.scheduled_for <= bindparam("now"))
    .order_by(_ex.scheduled_for)
    .limit(bindparam("limit"))
)
INSERT_ATTEMPTS = insert(DeliveryAttempt.__table__)
INSERT_MESSAGES = insert(SentMessage.__table__)


def _metrics_upsert(dialect_insert: Callable[..., Any]) -> Any:
    # A webhook may have counted an event for this email (and created its row) before the
    # send's own record: keep its flags, add what the send knows.
    statement = dialect_insert(EmailMetrics.__table__)
    return statement.on_conflict_do_update(
        index_elements=["execution_id"],
        set_={
            "provider": statement.excluded.provider,
            "provider_message_id": statement.excluded.provider_message_id,
        },
    )


INSERT_METRICS = {
    "postgresql": _metrics_upsert(postgresql.insert),
    "sqlite": _metrics_upsert(sqlite.insert),
}


def _suppression_upsert(dialect_insert: Callable[..., Any]) -> Any:
    # An address suppressed already for a bounce is refreshed (its 30 days start again).
    statement = dialect_insert(Suppression.__table__)
    return statement.on_conflict_do_update(
        index_elements=["workspace_id", "email", "reason"],
        set_={
            "bounce_type": statement.excluded.bounce_type,
            "suppressed_at": statement.excluded.suppressed_at,
        },
    )


UPSERT_SUPPRESSION = {
    "postgresql": _suppression_upsert(postgresql.insert),
    "sqlite": _suppression_upsert(sqlite.insert),
}
