"""The Celery application that carries the service past one machine: its tasks and schedule.

Each task is one call of a tool function with an id (Celery's task guide: idempotent tasks, ids
not objects); the rules live in the tools. A send task delivered twice (a worker died before
acknowledging it, a dispatcher raced the request) claims its row first and does nothing when
the claim fails. Configured from the service's settings (`tools.broker.celery_config`):
`CELERY_BROKER_URL`, JSON only, late acknowledgement, one task at a time per worker process.

    python main.py worker    # or: celery -A orchestration.celery_app worker
    python main.py beat      # or: celery -A orchestration.celery_app beat

Beat runs the periodic tasks: the dispatcher every `EMAIL_DISPATCH_INTERVAL_SECONDS` (queued
sends never published, due scheduled ones and CX08's reschedules), the stalled-send sweep and
the folding of webhook events that arrived before their send, every minute.
"""

from __future__ import annotations

from celery import Celery
from celery.signals import setup_logging, worker_process_init

import tools
from log_format import configure_logging
from settings import Settings, load_settings
from tools import broker, queue
from tools.send import send_stored_emails

_PERIODIC_SECONDS = 60


def create_celery(settings: Settings) -> Celery:
    app = Celery("email-service", set_as_current=False)
    app.conf.update(broker.celery_config(settings))
    app.conf.beat_schedule = {
        "dispatch": {"task": queue.DISPATCH, "schedule": settings.dispatch_interval_seconds},
        "sweep-stalled": {"task": queue.SWEEP_STALLED, "schedule": _PERIODIC_SECONDS},
        "fold-events": {"task": queue.FOLD_EVENTS, "schedule": _PERIODIC_SECONDS},
    }
    app.task(name=queue.SEND_STORED)(send_stored_emails)
    app.task(name=queue.DISPATCH)(_dispatch)
    app.task(name=queue.SWEEP_STALLED)(tools.escalate_stalled_sends)
    app.task(name=queue.FOLD_EVENTS)(tools.fold_waiting_events)
    return app


def _dispatch() -> int:
    return queue.dispatch(tools.get_runtime())


@worker_process_init.connect
def _fresh_runtime(**_: object) -> None:
    # A forked worker process must not share its parent's database connections or SMTP
    # sockets: it builds its own runtime on first use.
    tools.runtime.forget_after_fork()


@setup_logging.connect
def _service_logging(loglevel: int | str | None = None, **_: object) -> None:
    # Celery's own logging would drop the fields the tools attach to their lines (email id,
    # workspace, provider): the service's format is used instead, as in every command.
    settings = load_settings()
    configure_logging(loglevel or settings.log_level, settings.log_format)


# For `celery -A orchestration.celery_app ...`: built from the environment, as every command is.
app = create_celery(load_settings())
