"""Suppression list and signed unsubscribe links."""

from __future__ import annotations

import re
from datetime import timedelta
from urllib.parse import unquote

import pytest
from itsdangerous import URLSafeTimedSerializer

import tools
from tests.builders import send
from tests.observers import parse_message
from tools import clock


@pytest.mark.parametrize("reason", ["bounced", "complained", "unsubscribed"])
def test_suppressed_recipient_is_blocked_and_nothing_is_sent(reason, workspace, smtp_sink):
    assert tools.suppress(workspace["workspace_id"], "Bob@Example.com", reason)["success"]
    assert tools.is_suppressed(workspace["workspace_id"], "bob@example.com") is True

    result = send(workspace, "bob@EXAMPLE.com")

    assert result["status"] == "blocked"
    assert result["error"]["code"] == "suppressed"
    assert result["error"]["reason"] == reason
    assert smtp_sink.messages == []


def test_suppressed_cc_or_bcc_also_blocks(workspace, smtp_sink):
    tools.suppress(workspace["workspace_id"], "carol@example.com", "unsubscribed")
    assert send(workspace, cc=["carol@example.com"])["error"]["code"] == "suppressed"
    assert send(workspace, bcc=["carol@example.com"])["error"]["code"] == "suppressed"
    assert smtp_sink.messages == []


def test_a_send_scheduled_for_later_to_a_suppressed_recipient_is_blocked_at_once(
    workspace, smtp_sink
):
    tools.suppress(workspace["workspace_id"], "bob@example.com", "unsubscribed")
    later = (clock.utcnow() + timedelta(hours=1)).isoformat()
    result = send(workspace, scheduled_for=later)
    assert result["status"] == "blocked"
    assert result["error"]["code"] == "suppressed"
    assert result["email_id"] is None  # nothing was written to send later
    assert tools.send_due_emails(limit=10)["due"] == 0


def test_suppression_belongs_to_one_workspace(workspace, smtp_sink):
    other = tools.create_workspace("Other", "o@other.example", "2 Side Road, Townsville")
    tools.suppress(other["workspace_id"], "bob@example.com", "complained")
    assert tools.is_suppressed(workspace["workspace_id"], "bob@example.com") is False
    assert send(workspace)["status"] == "sent"


def test_hard_bounce_expires_after_30_days_but_unsubscribe_does_not(workspace, smtp_sink, mocker):
    wid = workspace["workspace_id"]
    tools.suppress(wid, "bounce@example.com", "bounced", bounce_type="hard")
    tools.suppress(wid, "gone@example.com", "unsubscribed")
    start = clock.utcnow()
    now = mocker.patch("tools.clock.utcnow", return_value=start + timedelta(days=29))
    assert tools.is_suppressed(wid, "bounce@example.com") is True
    later = start + timedelta(days=31)
    now.return_value = later
    assert tools.is_suppressed(wid, "bounce@example.com") is False
    assert tools.is_suppressed(wid, "gone@example.com") is True
    assert send(workspace, "bounce@example.com")["status"] == "sent"
    mocker.stop(now)


def test_suppress_rejects_bad_input(workspace):
    wid = workspace["workspace_id"]
    assert tools.suppress(wid, "bob@example.com", "bored")["error"]["code"] == "invalid_input"
    assert tools.suppress(wid, "not-an-address", "bounced")["error"]["code"] == "invalid_input"
    bad_type = tools.suppress(wid, "b@example.com", "complained", bounce_type="hard")
    assert bad_type["error"]["code"] == "invalid_input"
    unknown = tools.suppress("550e8400-e29b-41d4-a716-446655440000", "b@example.com", "bounced")
    assert unknown["error"]["code"] == "unknown_workspace"


def _token_from(raw: bytes) -> str:
    message = parse_message(raw)
    match = re.search(r"token=([A-Za-z0-9_.\-]+)>", message["List-Unsubscribe"])
    assert match
    return unquote(match.group(1))


def test_unsubscribe_link_from_a_received_email_blocks_the_next_send(workspace, smtp_sink):
    first = send(workspace)
    token = _token_from(smtp_sink.messages[0].data)

    result = tools.unsubscribe(token)

    assert result == {
        "success": True,
        "workspace_id": workspace["workspace_id"],
        "email": "bob@example.com",
    }
    assert tools.get_email_status(first["email_id"])["engagement"]["unsubscribed"] is True
    blocked = send(workspace)
    assert blocked["error"]["code"] == "suppressed"
    assert len(smtp_sink.messages) == 1


@pytest.mark.parametrize("tamper", ["flip", "foreign", "garbage"])
def test_tampered_or_foreign_token_changes_nothing(tamper, workspace, smtp_sink):
    send(workspace)
    token = _token_from(smtp_sink.messages[0].data)
    if tamper == "flip":
        token = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    elif tamper == "foreign":
        token = URLSafeTimedSerializer("another-secret", salt="email-unsubscribe-v1").dumps(
            {"w": workspace["workspace_id"], "e": "bob@example.com"}
        )
    else:
        token = "not-a-token"

    result = tools.unsubscribe(token)

    assert result["success"] is False
    assert result["error"]["reason"] == "tampered"
    assert tools.is_suppressed(workspace["workspace_id"], "bob@example.com") is False


def test_expired_token_changes_nothing(workspace, smtp_sink, runtime, mocker):
    send(workspace)
    token = _token_from(smtp_sink.messages[0].data)
    max_age = runtime.settings.unsubscribe_token_max_age_days * 86_400
    expired = mocker.patch(
        "itsdangerous.timed.time.time", return_value=__import__("time").time() + max_age + 10
    )
    result = tools.unsubscribe(token)
    mocker.stop(expired)
    assert result["success"] is False and result["error"]["reason"] == "expired"
    assert tools.is_suppressed(workspace["workspace_id"], "bob@example.com") is False


def test_a_new_bounce_restarts_the_30_days(workspace, mocker):
    wid = workspace["workspace_id"]
    start = clock.utcnow()
    tools.suppress(wid, "bounce@example.com", "bounced", bounce_type="hard")
    now = mocker.patch("tools.clock.utcnow", return_value=start + timedelta(days=20))
    tools.suppress(wid, "bounce@example.com", "bounced", bounce_type="hard")
    now.return_value = start + timedelta(days=45)
    assert tools.is_suppressed(wid, "bounce@example.com") is True
    now.return_value = start + timedelta(days=51)
    assert tools.is_suppressed(wid, "bounce@example.com") is False
    mocker.stop(now)


def test_concurrent_unsubscribes_of_one_address_both_succeed_on_postgresql(
    postgres_url, smtp_sink, tmp_path
):
    from concurrent.futures import ThreadPoolExecutor

    from tests.builders import make_settings

    tools.configure(make_settings(postgres_url, smtp_sink, tmp_path))
    try:
        ws = tools.create_workspace("W", "w@w.example", "1 Road, Town")
        token = tools.get_runtime().tokens.make(ws["workspace_id"], "bob@example.com")
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(lambda _: tools.unsubscribe(token), range(16)))
        assert all(r["success"] for r in results), results
        assert tools.is_suppressed(ws["workspace_id"], "bob@example.com")
    finally:
        tools.shutdown()
