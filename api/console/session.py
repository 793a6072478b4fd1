"""Who is signed in to the console, and what guards every page.

A sign-in with the workspace's API key keeps the key's hash (never the key) and the sign-in
time in Flask's signed session cookie. Every page looks the hash up again, so a rotated key
ends its sessions at once, and the session ends `console_session_minutes` after the sign-in
however active it is. Every POST carries a CSRF token (Flask-WTF) bound to the session.
"""

from __future__ import annotations

from flask import Response, current_app, g, redirect, render_template, request, session, url_for
from flask_wtf.csrf import CSRFError, validate_csrf
from wtforms.validators import ValidationError

from tools import clock
from tools.workspaces import KeyOwner, hash_api_key, owner_of_key_hash, workspace_for_api_key

# No script runs anywhere in the console; an email's HTML is shown only in a sandboxed frame
# served with a CSP of its own (pages.message_html).
PAGE_POLICY = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; frame-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
OPEN_ENDPOINTS = {"console.sign_in", "console.static"}


def sign_in(api_key: str) -> bool:
    """Start a session for the workspace `api_key` belongs to; False for an unknown key."""
    key = api_key.strip()
    if workspace_for_api_key(key) is None:
        return False
    session.clear()  # nothing of an earlier session (its CSRF token) carries over
    session.permanent = True
    session["key_hash"] = hash_api_key(key)
    session["signed_in_at"] = int(clock.utcnow().timestamp())
    return True


def sign_out() -> None:
    session.clear()


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a console path only (never another site)."""
    if target and target.startswith("/console/") and not target.startswith("/console//"):
        return target
    return url_for("console.overview")


def guard() -> Response | None:
    """`before_request` of the console: a POST's CSRF token, then a live session."""
    if request.method == "POST":
        try:
            validate_csrf(request.form.get("csrf_token"))
        except ValidationError as error:
            raise CSRFError(str(error)) from None
    if request.endpoint in OPEN_ENDPOINTS:
        return None
    owner = _signed_in_owner()
    if owner is None:
        session.clear()
        return redirect(url_for("console.sign_in", next=request.full_path))
    g.workspace_id, g.workspace_name = owner.workspace_id, owner.name
    g.key_fingerprint = session["key_hash"][:12]
    return None


def _signed_in_owner() -> KeyOwner | None:
    key_hash, since = session.get("key_hash"), session.get("signed_in_at")
    if not isinstance(key_hash, str) or not isinstance(since, int):
        return None
    lifetime = current_app.permanent_session_lifetime.total_seconds()
    if clock.utcnow().timestamp() - since > lifetime:
        return None
    return owner_of_key_hash(key_hash)


def csrf_refused(error: CSRFError) -> tuple[str, int]:
    """A form without its token (or from another session) changes nothing: said so, 400."""
    return render_template("console/refused.html", reason=error.description), 400


def secure_headers(response: Response) -> Response:
    response.headers.setdefault("Content-Security-Policy", PAGE_POLICY)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["Cache-Control"] = "no-store"
    return response
