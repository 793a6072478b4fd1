"""The Celery application that publishes send tasks, and the Celery settings every process of
the service shares. Imported only when CELERY_BROKER_URL is set: without a broker, no command
pays for loading Celery."""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery
from kombu.exceptions import OperationalError as BrokerError

from settings import Settings
from tools.queue import SEND_STORED

log = logging.getLogger(__name__)


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
