"""Serving the API on waitress, a production WSGI server (pure Python, no fork)."""

from __future__ import annotations

from flask import Flask
from waitress.server import create_server


def make_server(app: Flask, host: str = "127.0.0.1", port: int = 8080, threads: int = 8):
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
