"""Serving the API on waitress, a production WSGI server (pure Python, no fork), and stopping
it cleanly.

On SIGTERM (a process manager's stop) or Ctrl-C the server stops listening at once, so a new
connection is refused rather than accepted and dropped. The requests in hand get up to 5 s
(waitress's own shutdown wait) to finish and be answered: a send under way is delivered,
recorded and answered rather than cut off mid-delivery, where it would stay `sending` until
the stalled-send sweep escalates it. Then the process exits. Requests read but
not yet started are closed unanswered: nothing was sent for them, and a retry is safe. A
second signal stops at once.
"""

from __future__ import annotations

import logging
import signal
from typing import Any

from flask import Flask
from waitress import wasyncore
from waitress.server import BaseWSGIServer, MultiSocketServer, create_server

from orchestration.signals import handling_signals

log = logging.getLogger(__name__)

# Responses of the requests that finished in the grace period are flushed for up to this long.
_FLUSH_SECONDS = 1.0


def make_server(app: Flask, host: str = "127.0.0.1", port: int = 8080, threads: int = 8) -> Any:
    """A waitress server for `app`, bound and ready to `run()` (port 0: any free one,
    `effective_port` tells which)."""
    return create_server(
        app,
        host=host,
        port=port,
        threads=threads,
        # Waitress buffers the body before the app sees it: a backstop above the app's own limit,
        # so that requests just over that limit still get its JSON 413.
        max_request_body_size=2 * app.config["MAX_CONTENT_LENGTH"],
        ident="email-service",
    )


def serve_until_stopped(server: Any) -> None:
    """Run `server` until SIGTERM or SIGINT, then stop as the module's note says. A second
    signal raises KeyboardInterrupt."""
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        if not stopping:
            stopping = True
            _stop_listening(server)
            log.info("stopping: finishing the requests in hand")
        # Waitress's loop lets KeyboardInterrupt (and nothing else) through its event handling,
        # then waits for its threads; raised again during that wait, it ends it.
        raise KeyboardInterrupt

    with handling_signals(stop, signal.SIGTERM, signal.SIGINT):
        try:
            server.run()  # returns after the first signal, once the requests in hand are done
            _flush(server)
        finally:
            server.close()


def _socket_map(server: Any) -> dict[int, wasyncore.dispatcher]:
    # One listening socket (BaseWSGIServer) or several (MultiSocketServer, for a host name
    # with several addresses); the map also holds every open connection.
    return server.map if isinstance(server, MultiSocketServer) else server._map


def _stop_listening(server: Any) -> None:
    for entry in list(_socket_map(server).values()):
        if isinstance(entry, BaseWSGIServer):
            wasyncore.dispatcher.close(entry)  # the listening socket; connections stay open


def _flush(server: Any) -> None:
    """Let the answers of the requests that finished go out."""
    sockets = _socket_map(server)
    for _ in range(int(_FLUSH_SECONDS / 0.05)):
        if not any(entry.writable() for entry in sockets.values()):
            return
        wasyncore.loop(timeout=0.05, map=sockets, count=1)
