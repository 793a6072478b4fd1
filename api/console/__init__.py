"""The operator console at `/console/`: server-rendered pages over the tool functions (no
business rule lives here), signed in with the workspace's API key.

`session.py` signs people in and out and guards every page (session cookie, CSRF, security
headers); `pages.py` holds the pages; `charts.py` draws the overview's SVG; the dev inbox reads
the development SMTP server's mail through `tools/dev_inbox.py`.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import timedelta

from flask import Flask

from api.console.pages import console
from tools.runtime import Runtime
from tools.unsubscribe_tokens import resolve_signing_secret


def register_console(app: Flask, runtime: Runtime) -> None:
    """Mount the console and configure the signed session cookie it signs people in with."""
    settings = runtime.settings
    # Derived, so the unsubscribe links' secret is never itself a cookie's key.
    secret = resolve_signing_secret(settings).encode()
    app.secret_key = hmac.new(secret, b"console-session", hashlib.sha256).hexdigest()
    app.config.update(
        SESSION_COOKIE_NAME="console_session",
        SESSION_COOKIE_PATH="/console",  # the JSON API never sees it
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.public_base_url.startswith("https://"),
        PERMANENT_SESSION_LIFETIME=timedelta(minutes=settings.console_session_minutes),
        # The expiry counts from the sign-in, not from the last page seen.
        SESSION_REFRESH_EACH_REQUEST=False,
        WTF_CSRF_TIME_LIMIT=None,  # a form lives as long as the session that made it
    )
    app.register_blueprint(console)
