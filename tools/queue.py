"""Handing stored sends to the task queue (Celery), after the row that records them commits.

This is the outbox's publishing side: a send accepted as `queued` is committed first, then a
task naming its id is published; scheduled sends are published when they fall due, and what
the dispatcher finds goes in batches (a task carries a list of ids). Publishing
may fail (the broker down): the row stays as it is, and the dispatcher, run periodically by
beat, publishes whatever was never published or may have been lost (`dispatch`). So nothing
accepted waits on the broker being up, and nothing is lost while it is down. A task delivered
twice does no harm: the worker claims its row with one conditional update first.

Messages are JSON (never pickle) and carry only an id. The worker side (the tasks themselves)
is `orchestration/celery_app.py`.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from celery import Celery
from kombu.exceptions import OperationalError as BrokerError
from sqlalchemy import bindparam, or_, select, update

from persistence import EmailExecution, ExecutionStatus, all_workspaces
from settings import Settings
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


def celery_config(settings: Settings) -> dict[str, Any]:
    """The Celery settings every process of the service shares (publishers and workers)."""
    return {
        "broker_url": settings.celery_broker_url,
        "task_serializer": "json",
        "accept_content": ["json"],
        "result_backend": None,  # the database is the record
        "task_ignore_result": True,
        # A task is acknowledged when it has finished, and given to another worker if the one
        # running it died; the claim on the row makes the second run harmless.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "broker_transport_options": {"visibility_timeout": settings.broker_visibility_seconds},
        # Publishing must not hang a request while the broker is away: fail fast, the
        # dispatcher publishes it later.
        "broker_connection_timeout": 2,
        "broker_connection_retry_on_startup": True,
        "task_publish_retry": False,
    }


class TaskQueue:
    """The publishing side of the Celery application (no task is registered here)."""

    def __init__(self, settings: Settings) -> None:
        self._app = Celery("email-service", set_as_current=False)
        self._app.conf.update(celery_config(settings))

    def publish_sends(self, email_ids: list[str], batch_size: int) -> list[str]:
        """Publish send tasks for `email_ids`, `batch_size` ids to a task, in order, until the
        broker fails; the ids published."""
        published: list[str] = []
        for start in range(0, len(email_ids), batch_size):
            batch = email_ids[start : start + batch_size]
            try:
                self._app.send_task(SEND_STORED, args=[batch], retry=False)
            except (BrokerError, OSError) as error:
                log.warning("task not published", extra={"error_type": type(error).__name__})
                break
            published += batch
        return published

    def answers(self) -> bool:
        """Whether the broker takes a connection now (within the connection timeout)."""
        with self._app.connection_for_write() as connection:
            try:
                connection.connect()
            except (*connection.connection_errors, BrokerError, OSError) as error:
                log.warning("broker not ready", extra={"error_type": type(error).__name__})
                return False
        return True

    def close(self) -> None:
        self._app.close()


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
