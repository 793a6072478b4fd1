"""The operator console over Flask's test client: signing in and out, the session cookie, CSRF,
what each page shows, and one workspace never seeing another's data. (The browser drives the
same pages in tests/test_console_browser.py.)"""

from __future__ import annotations

import re
from datetime import timedelta
from html import unescape
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

import tools
from api import create_app
from persistence import OperatorAction
from tests.builders import ASSET, send
from tools import clock
from tools.workspaces import hash_api_key

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


class Console:
    """A person at the console: one browser's cookies, and the CSRF token of the last page."""

    def __init__(self, client: FlaskClient) -> None:
        self.client = client
        self.token: str | None = None

    def get(self, path: str, **kw: Any) -> Any:
        reply = self.client.get(path, **kw)
        found = CSRF.search(reply.get_data(as_text=True))
        if found:
            self.token = found.group(1)
        return reply

    def post(self, path: str, data: dict[str, str], *, with_token: bool = True) -> Any:
        form = {**data, "csrf_token": self.token} if with_token and self.token else data
        return self.client.post(path, data=form)

    def sign_in(self, api_key: str) -> Any:
        self.get("/console/sign-in")
        return self.post("/console/sign-in", {"api_key": api_key})


@pytest.fixture
def app(runtime: Any) -> Any:
    return create_app()


@pytest.fixture
def console(app: Any, workspace: dict[str, Any]) -> Console:
    person = Console(app.test_client())
    assert person.sign_in(workspace["api_key"]).status_code == 302
    return person


def page_text(reply: Any) -> str:
    return unescape(re.sub(r"<[^>]+>", " ", reply.get_data(as_text=True)))


PAGES = ("/console/", "/console/executions", "/console/escalations", "/console/suppressions")


@pytest.mark.parametrize("path", PAGES)
def test_every_page_asks_for_a_sign_in_first(app, runtime, path):
    reply = app.test_client().get(path)

    assert reply.status_code == 302
    assert reply.headers["Location"].startswith("/console/sign-in?next=")


def test_a_sign_in_keeps_a_signed_http_only_cookie_and_never_the_key(app, workspace):
    person = Console(app.test_client())
    reply = person.sign_in(workspace["api_key"])

    assert reply.status_code == 302 and reply.headers["Location"] == "/console/"
    cookie = reply.headers["Set-Cookie"]
    assert cookie.startswith("console_session=")
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/console" in cookie
    assert "Expires=" in cookie
    assert "Secure" in cookie  # the public URL of the test settings is https
    assert workspace["api_key"] not in cookie
    assert "Acme" in page_text(person.get("/console/"))


def test_a_wrong_key_is_refused_and_signs_nobody_in(app, workspace):
    person = Console(app.test_client())

    reply = person.sign_in("ek_" + "x" * 43)

    assert reply.status_code == 401
    assert "belongs to no workspace" in page_text(reply)
    assert person.get("/console/").status_code == 302


def test_after_sign_in_it_goes_back_to_the_page_asked_for_and_never_elsewhere(app, workspace):
    person = Console(app.test_client())
    person.get("/console/sign-in")
    key = {"api_key": workspace["api_key"]}

    back = person.post("/console/sign-in?next=/console/suppressions", key)
    person.get("/console/sign-in")
    away = person.post("/console/sign-in?next=https://evil.example/", key)

    assert back.headers["Location"] == "/console/suppressions"
    assert away.headers["Location"] == "/console/"


def test_sign_out_ends_the_session(console):
    console.get("/console/")

    reply = console.post("/console/sign-out", {})

    assert reply.status_code == 302 and reply.headers["Location"] == "/console/sign-in"
    assert console.get("/console/").status_code == 302


def test_the_session_ends_at_its_expiry_however_active(console, runtime, mocker):
    minutes = runtime.settings.console_session_minutes
    later = clock.utcnow() + timedelta(minutes=minutes, seconds=1)
    assert console.get("/console/").status_code == 200

    mocker.patch("tools.clock.utcnow", return_value=later)

    assert console.get("/console/").status_code == 302


def test_a_rotated_key_ends_its_sessions(console, workspace):
    tools.rotate_api_key(workspace["workspace_id"])

    assert console.get("/console/").status_code == 302


def test_a_form_posted_without_its_csrf_token_changes_nothing(console, workspace):
    ws = workspace["workspace_id"]
    tools.suppress(ws, "gone@example.com", "unsubscribed")
    console.get("/console/suppressions")

    removed = console.post(
        "/console/suppressions/remove",
        {"email": "gone@example.com", "note": "x"},
        with_token=False,
    )
    added = console.post(
        "/console/suppressions",
        {"email": "new@example.com", "reason": "complained", "note": "x", "csrf_token": "forged"},
        with_token=False,
    )
    signed_out = console.post("/console/sign-out", {}, with_token=False)

    assert removed.status_code == added.status_code == signed_out.status_code == 400
    assert "Nothing was changed" in page_text(removed)
    assert tools.is_suppressed(ws, "gone@example.com") is True
    assert tools.is_suppressed(ws, "new@example.com") is False
    assert console.get("/console/").status_code == 200  # still signed in


def test_a_token_from_another_session_is_refused(app, console, other_workspace):
    other = Console(app.test_client())
    other.sign_in(other_workspace["api_key"])
    other.get("/console/suppressions")
    console.token = other.token

    reply = console.post(
        "/console/suppressions", {"email": "x@example.com", "reason": "complained", "note": "n"}
    )

    assert reply.status_code == 400
    assert tools.is_suppressed(other_workspace["workspace_id"], "x@example.com") is False


def test_pages_carry_a_policy_under_which_no_script_runs(console):
    reply = console.get("/console/")

    policy = reply.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "script-src" not in policy
    assert "frame-ancestors 'none'" in policy
    assert reply.headers["Cache-Control"] == "no-store"
    assert reply.headers["X-Content-Type-Options"] == "nosniff"


def test_the_overview_draws_the_last_day_and_the_hours_use(console, workspace, smtp_sink):
    send(workspace)
    send(workspace, "carol@example.com")
    tools.suppress(workspace["workspace_id"], "dave@example.com", "unsubscribed")
    send(workspace, "dave@example.com")  # blocked: no row, nothing counted

    html = console.get("/console/").get_data(as_text=True)

    sent_bars = re.findall(r'class="fill-sent"[^>]*data-count="(\d+)"', html)
    assert sum(int(n) for n in sent_bars) == 2
    assert re.search(r'aria-label="2 of 300 recipients this hour"', html)
    assert 'id="sends-chart"' in html and "smtp" in html


def test_the_overview_says_what_to_do_when_nothing_was_sent(console):
    assert "No sends in the last 24 hours" in page_text(console.get("/console/"))


def test_executions_filter_and_page_newest_first(console, workspace, smtp_sink):
    for n in range(27):
        send(workspace, f"r{n}@example.com")
    tools.suppress(workspace["workspace_id"], "late@example.com", "unsubscribed")

    first = page_text(console.get("/console/executions"))
    second = page_text(console.get("/console/executions?page=2"))
    one = page_text(console.get("/console/executions?recipient=r3@example.com"))
    none = page_text(console.get("/console/executions?status=escalated"))
    bad = console.get("/console/executions?since=yesterday")

    assert "27 executions" in first and "Page 1 of 2" in first
    assert "r26@example.com" in first and "r0@example.com" not in first
    assert "r0@example.com" in second
    assert "1 execution," in one and "r3@example.com" in one and "r4@example.com" not in one
    assert "No execution matches" in none
    assert bad.status_code == 400


def test_a_subject_and_body_with_script_render_inert(console, workspace, smtp_sink):
    hostile = {
        **ASSET,
        "subject": "<script>alert('s')</script> hello",
        "html_body": '<p>Hi</p><script>alert(1)</script><a href="javascript:alert(2)">x</a>',
        "text_body": "<script>alert(3)</script> javascript:alert(4)",
    }
    sent = send(workspace, final_asset=hostile)
    assert sent["status"] == "sent", sent

    listing = console.get("/console/executions").get_data(as_text=True)
    page = console.get(f"/console/executions/{sent['email_id']}").get_data(as_text=True)
    frame = console.get(f"/console/executions/{sent['email_id']}/messages/0")

    assert "<script>" not in listing and "&lt;script&gt;" in listing
    assert "<script>" not in page and "&lt;script&gt;alert(3)" in page
    assert 'href="javascript:' not in page
    assert re.search(r'<iframe class="html-part" sandbox=""', page)
    assert frame.headers["Content-Security-Policy"].startswith("sandbox;")
    assert "default-src 'none'" in frame.headers["Content-Security-Policy"]


def test_another_workspaces_key_sees_none_of_its_rows(app, workspace, other_workspace, smtp_sink):
    sent = send(workspace, "secret-recipient@example.com")
    ws = workspace["workspace_id"]
    tools.suppress(ws, "hidden@example.com", "complained")
    other = Console(app.test_client())
    other.sign_in(other_workspace["api_key"])

    texts = [page_text(other.get(path)) for path in PAGES]
    detail = other.get(f"/console/executions/{sent['email_id']}")
    frame = other.get(f"/console/executions/{sent['email_id']}/messages/0")
    removed = other.post(
        "/console/suppressions/remove", {"email": "hidden@example.com", "note": "mine now"}
    )

    for text in texts:
        assert "secret-recipient" not in text and "hidden@example.com" not in text
        assert "Acme" not in text
    assert detail.status_code == 404 and frame.status_code == 404
    assert removed.status_code == 302
    assert tools.is_suppressed(ws, "hidden@example.com") is True


def test_suppressions_are_searched_added_and_removed_with_a_note(console, workspace):
    ws = workspace["workspace_id"]
    console.get("/console/suppressions")

    added = console.post(
        "/console/suppressions",
        {"email": "Pat@Example.com", "reason": "complained", "note": "asked by phone"},
    )
    found = page_text(console.get("/console/suppressions?search=example.com"))
    missing = page_text(console.get("/console/suppressions?search=nobody"))
    removed = console.post(
        "/console/suppressions/remove", {"email": "pat@example.com", "note": "wrong person"}
    )
    after = page_text(console.get("/console/suppressions"))

    assert added.status_code == removed.status_code == 302
    assert "pat@example.com" in found and "complained" in found
    assert "No suppressed address contains" in missing
    assert "Lifted the suppression of pat@example.com" in after
    assert tools.is_suppressed(ws, "pat@example.com") is False
    assert tools.list_suppressions(ws)["suppressions"] == []
    with tools.get_runtime().read_sessions() as session:
        recorded = session.scalars(
            select(OperatorAction)
            .where(OperatorAction.workspace_id == ws)
            .order_by(OperatorAction.created_at)
        ).all()
    fingerprint = hash_api_key(workspace["api_key"])[:12]
    assert [(a.action, a.subject, a.note, a.key_fingerprint) for a in recorded] == [
        ("add_suppression", "pat@example.com", "asked by phone", fingerprint),
        ("remove_suppression", "pat@example.com", "wrong person", fingerprint),
    ]


def test_a_refused_action_says_why(console, workspace):
    console.get("/console/suppressions")

    console.post("/console/suppressions/remove", {"email": "never@example.com", "note": "n"})

    assert "this address is not suppressed" in page_text(console.get("/console/suppressions"))


def test_the_dev_inbox_is_absent_behind_a_real_provider(console):
    assert "Dev inbox" not in page_text(console.get("/console/"))
    assert console.get("/console/inbox").status_code == 404


@pytest.fixture
def dev_console(settings, workspace):
    """The console on the built-in development SMTP server (no provider configured)."""
    tools.configure(settings.replace(smtp_server=None))
    person = Console(create_app().test_client())
    person.sign_in(workspace["api_key"])
    return person


def test_the_dev_inbox_shows_what_the_development_server_received(dev_console, workspace):
    sent = send(workspace, "inbox@example.com")
    assert sent["status"] == "sent", sent

    listing = dev_console.get("/console/inbox")
    html_tab = dev_console.get(f"/console/inbox/{sent['email_id']}")
    text_tab = dev_console.get(f"/console/inbox/{sent['email_id']}?tab=text")
    raw_tab = dev_console.get(f"/console/inbox/{sent['email_id']}?tab=raw")
    frame = dev_console.get(f"/console/inbox/{sent['email_id']}/html")

    assert "inbox@example.com" in page_text(listing) and ASSET["subject"] in page_text(listing)
    assert 'sandbox=""' in html_tab.get_data(as_text=True)
    assert "We have an important update for you." in page_text(text_tab)
    assert f"<{sent['email_id']}@" in page_text(raw_tab)
    assert frame.headers["Content-Security-Policy"].startswith("sandbox;")
    assert "We have an important update for you." in frame.get_data(as_text=True)


def test_the_dev_inbox_shows_a_workspace_its_own_mail_only(
    dev_console, workspace, other_workspace, settings
):
    mine = send(workspace, "mine@example.com")
    theirs = send(other_workspace, "theirs@example.com")
    stray = settings.outbox_dir / "unknown-1.eml"
    stray.write_bytes(b"Subject: stray\r\n\r\nnobody's\r\n")

    listing = page_text(dev_console.get("/console/inbox"))

    assert "mine@example.com" in listing and "theirs@example.com" not in listing
    assert "stray" not in listing
    assert dev_console.get(f"/console/inbox/{theirs['email_id']}").status_code == 404
    assert dev_console.get(f"/console/inbox/{theirs['email_id']}/html").status_code == 404
    assert dev_console.get("/console/inbox/unknown-1").status_code == 404
    assert dev_console.get("/console/inbox/..%2F..%2Fsettings.py").status_code == 404
    assert dev_console.get(f"/console/inbox/{mine['email_id']}").status_code == 200


def test_an_escalation_every_provider_refused_can_be_sent_again_from_the_console(
    console, workspace, smtp_sink, runtime, mocker
):
    smtp_sink.recorder.rcpt_replies.extend(["554 5.7.1 Message refused by policy"] * 2)
    failed = send(workspace, "back@example.com")
    later = clock.utcnow() + timedelta(seconds=runtime.settings.reschedule_delay_seconds + 1)
    mocker.patch("tools.clock.utcnow", return_value=later)
    assert tools.send_due_emails()["delivery_failed"] == 1
    email_id = failed["email_id"]

    page = console.get("/console/escalations").get_data(as_text=True)
    assert f'action="/console/escalations/{email_id}/send-again"' in page
    reply = console.post(f"/console/escalations/{email_id}/send-again", {"note": "mailbox is back"})
    shown = page_text(console.get(reply.headers["Location"]))

    assert reply.headers["Location"] == f"/console/executions/{email_id}"
    assert "Sent again through every check: it is now sent." in shown
    assert [m.rcpt_tos for m in smtp_sink.messages] == [["back@example.com"]]
    assert "send_again" in shown and "mailbox is back" in shown
    assert "Nothing needs a person" in page_text(console.get("/console/escalations"))
