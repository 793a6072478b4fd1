"""Handing stored sends to the task queue (Celery), after the row that records them commits.

This is the outbox's publishing side: a send accepted as `queued` is committed first, then a
task naming its id is published; scheduled sends are published when they fall due, and what
the dispatcher finds goes in batches (a task carries a list of ids). Publishing
may fail (the broker down): the row stays as it is, and the dispatcher, run periodically by
beat, publishes whatever was never published or may have been lost (`dispatch`). So nothing
accepted waits on the broker being up, and nothing is lost while it is down. A task delivered
twice does no harm: the worker claims its row with one conditional update first.

Messages are JSON (never pickle) and carry only an id. The Celery application that publishes
them is `tools/broker.py`; the worker side (the tasks themselves) `orchestration/celery_app.py`.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING

from sqlalchemy import bindparam, or_, select, update

from persistence import EmailExecution, ExecutionStatus, all_workspaces
from tools import clock
from tools.boundary import DATABASE_ERRORS

if TYPE_CHECKING:  # the runtime builds the queue: only its type is needed here
    from tools.runtime import Runtime

log = logging.getLogger(__name__)

SEND_STORED = "email.send_stored"  # a batch of ids: `tools.send.send_stored_emails`
DISPATCH = "email.dispatch"
SWEEP_STALLED = "email.sweep_stalled"
FOLD_EVENTS = "email.fold_events"
# A due scheduled send the worker deferred (hourly limit full) is published again this long
# after its last publication, as the embedded worker polls.
REDUE_SECONDS = 60

_ex = EmailExecution.__table__.c
_WAITING = (
    select(_ex.id)
    .where(
        or_(
            (_ex.status == ExecutionStatus.QUEUED)
            & (_ex.published_at.is_(None) | (_ex.published_at < bindparam("lost_before"))),
            (_ex.status == ExecutionStatus.SCHEDULED)
            & (_ex.scheduled_for <= bindparam("now"))
            & (_ex.published_at.is_(None) | (_ex.published_at < bindparam("redue_before"))),
        )
    )
    .order_by(_ex.reserved_at, _ex.scheduled_for)
    .limit(bindparam("limit"))
)
_PUBLISHED = (
    update(EmailExecution.__table__)
    .where(_ex.id.in_(bindparam("ids", expanding=True)))
    .values(published_at=bindparam("now"))
)


def publish_accepted(runtime: Runtime, email_id: str) -> None:
    """Publish a send just accepted as `queued` (its row is committed); when the broker is
    away, the dispatcher publishes it later."""
    if runtime.queue is None:
        return  # no broker: `main.py worker` finds it itself
    if runtime.queue.publish_sends([email_id], batch_size=1):
        _mark_published(runtime, [email_id])


@all_workspaces()
def dispatch(runtime: Runtime, limit: int = 500) -> int:
    """Publish the queued sends never published (or published longer ago than the broker
    keeps an unacknowledged task) and the due scheduled ones, in batches of
    `EMAIL_SEND_BATCH_SIZE`; how many were published.

    On PostgreSQL the rows are locked `FOR UPDATE SKIP LOCKED`, so dispatchers running at once
    publish different rows."""
    assert runtime.queue is not None, "dispatch needs CELERY_BROKER_URL"
    now = clock.utcnow()
    lost_before = now - timedelta(seconds=runtime.settings.broker_visibility_seconds)
    statement = _WAITING.with_for_update(skip_locked=True)
    params = {
        "now": now,
        "lost_before": lost_before,
        "redue_before": now - timedelta(seconds=REDUE_SECONDS),
        "limit": limit,
    }
    with runtime.engine.begin() as conn:
        waiting = list(conn.scalars(statement, params))
        published = runtime.queue.publish_sends(waiting, runtime.settings.send_batch_size)
        if published:
            conn.execute(_PUBLISHED, {"ids": published, "now": now})
    return len(published)


def _mark_published(runtime: Runtime, email_ids: list[str]) -> None:
    # Best effort: unmarked, a published send is published again by the dispatcher, and its
    # second task finds it claimed. The request that accepted it has succeeded either way.
    try:
        with runtime.engine.begin() as conn:
            conn.execute(_PUBLISHED, {"ids": email_ids, "now": clock.utcnow()})
    except DATABASE_ERRORS as error:
        log.warning("publication not recorded", extra={"error_type": type(error).__name__})
