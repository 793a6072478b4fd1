"""The long-running commands: `serve` the HTTP API, the `worker`, Celery's `beat`."""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import threading
from collections.abc import Iterator
from urllib.parse import urlsplit

import click

import tools
from cli.running import CommandFailed, with_runtime
from orchestration.signals import handling_signals
from settings import Settings

log = logging.getLogger("worker")


@click.command()
@click.option("--host", default="127.0.0.1", help="The address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, help="0: any free port.")
@click.option("--threads", type=click.IntRange(1), default=8, help="Requests served at once.")
@with_runtime(service=True, sends=True)
def serve(host: str, port: int, threads: int) -> None:
    """Run the HTTP API (and the operator console) on waitress until SIGTERM or Ctrl-C."""
    from api import create_app
    from api.server import make_server, serve_until_stopped

    settings = tools.get_runtime().settings
    # Where it matters: a real provider's recipients get links that must be https (mail
    # clients show one-click unsubscribe only then); the development server's get none.
    if not settings.uses_dev_smtp_server and not settings.public_base_url.startswith("https://"):
        logging.getLogger("main").warning(
            "EMAIL_PUBLIC_BASE_URL is not https; mail clients offer one-click unsubscribe "
            "only for https links"
        )
    app = create_app()
    try:
        server = make_server(app, host, port, threads=threads)
    except OSError as error:  # the port is taken, the address not this machine's
        raise CommandFailed(f"error: cannot listen on {host}:{port}: {error.strerror}") from None
    except ValueError:  # waitress: a host name that does not resolve
        raise CommandFailed(f"error: cannot listen on {host}:{port}: no such address") from None
    base = f"http://{host}:{server.effective_port}"
    _warn_if_links_miss(settings, int(server.effective_port))  # waitress gives it as text
    print(f"Serving the API on {base} (interactive docs {base}/docs/, console {base}/console/)")
    serve_until_stopped(server)


def _warn_if_links_miss(settings: Settings, port: int) -> None:
    """Mail's unsubscribe links go to EMAIL_PUBLIC_BASE_URL: on this machine, on another port
    than this server's, they would reach nothing."""
    public = urlsplit(settings.public_base_url)
    if public.hostname in ("localhost", "127.0.0.1", "::1") and public.port != port:
        logging.getLogger("main").warning(
            f"EMAIL_PUBLIC_BASE_URL is {settings.public_base_url}, but this server listens on "
            f"port {port}: the unsubscribe links in mail sent now lead nowhere; set "
            f"EMAIL_PUBLIC_BASE_URL=http://localhost:{port}"
        )


@click.command()
@click.option("--once", is_flag=True, help="Process what is due, then exit.")
@click.option("--interval", type=click.FloatRange(0), default=5.0, help="Seconds between polls.")
@click.option("--batch", type=click.IntRange(1), default=100, help="Emails per poll.")
@click.option(
    "--concurrency",
    type=click.IntRange(1),
    default=4,
    help="With CELERY_BROKER_URL: Celery worker processes.",
)
@with_runtime(service=True, sends=True)
def worker(once: bool, interval: float, batch: int, concurrency: int) -> None:
    """Send queued emails, and scheduled ones when due; fold webhook events that arrived
    before their send; escalate sends whose process stopped during delivery.

    With CELERY_BROKER_URL set, runs a Celery worker instead (`beat` then schedules the
    periodic work); without, this one process does it all, polling.
    """
    settings = tools.get_runtime().settings
    if settings.celery_broker_url is not None:
        _celery(settings, ["worker", f"--concurrency={concurrency}"])
        return
    log.info("worker started", extra={"interval_seconds": interval, "batch": batch})
    stop = threading.Event()
    with _stop_on_signals(stop):
        while True:
            # A failed pass (the database away, a deadlock victim) is logged and tried again at
            # the next poll: one bad moment must not stop scheduled sends for good.
            try:
                _one_pass(batch, stop)
            except Exception:
                log.exception("worker pass failed; retrying at the next poll")
                if once:
                    click.get_current_context().exit(1)
            if once or stop.wait(interval):
                return


def _one_pass(batch: int, stop: threading.Event) -> None:
    queued = tools.send_queued_emails(limit=batch, stop=stop)
    if queued["due"]:
        log.info("queued sends processed", extra=queued)
        print(json.dumps({"queued": queued}))
    counts = tools.send_due_emails(limit=batch, stop=stop)
    if counts["due"]:
        log.info("scheduled sends processed", extra=counts)
        print(json.dumps(counts))
    folded = tools.fold_waiting_events()  # webhook events that overtook their send
    if folded:
        print(json.dumps({"events_folded": folded}))
    stalled = tools.escalate_stalled_sends()  # outlived the process delivering them
    if stalled:
        log.warning("stalled sends escalated", extra={"escalated": stalled})
        print(json.dumps({"stalled_sends_escalated": stalled}))


@contextlib.contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGTERM (a process manager's stop) and Ctrl-C set `stop` instead of killing the worker.

    The send in hand then finishes and is recorded; the emails still due stay scheduled for the
    next worker. Killed during a delivery instead, a send would stay `sending` until the
    stalled-send sweep escalates it as unconfirmed. A second signal stops at once.
    """

    def request_stop(signum: int, frame: object) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        log.info("stopping after the send in hand")
        stop.set()

    with handling_signals(request_stop, signal.SIGTERM, signal.SIGINT):
        yield


@click.command()
@click.option(
    "--schedule",
    type=click.Path(dir_okay=False),
    default="celerybeat-schedule",
    help="Beat's state file.",
)
@with_runtime(service=True)
def beat(schedule: str) -> None:
    """With CELERY_BROKER_URL: run the periodic tasks (dispatch, sweep, fold)."""
    settings = tools.get_runtime().settings
    if settings.celery_broker_url is None:
        raise CommandFailed(
            "error: beat needs CELERY_BROKER_URL (without one, `worker` does it all)", exit_code=2
        )
    _celery(settings, ["beat", f"--schedule={schedule}"])


def _celery(settings: Settings, argv: list[str]) -> None:
    """Run a Celery worker or beat with the service's settings (`orchestration/celery_app.py`).
    Its processes build their own runtime: this one's connections are closed first."""
    from orchestration.celery_app import create_celery

    tools.shutdown()
    code = create_celery(settings).start([*argv, f"--loglevel={settings.log_level}"])
    if code:  # Celery has said why
        click.get_current_context().exit(code)
