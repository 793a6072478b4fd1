"""A recipient the receiving server refuses for good ("no such user": SMTP 550, 551, 553 at
RCPT or after DATA) is a hard bounce at hand-over: recorded and suppressed as a bounce webhook
would, not rescheduled by CX08 (no later try can deliver it)."""

from __future__ import annotations

import pytest

import tools
from tests.builders import ASSET, approve, send
from tests.smtp_sink import ACCEPT
from tools.send import send_stored_emails


@pytest.mark.parametrize(
    "stage,reply",
    [
        ("rcpt", "550 5.1.1 No such user"),
        ("rcpt", "551 5.1.6 User not local"),
        ("rcpt", "553 5.1.3 Mailbox name not allowed"),
        ("data", "550 5.1.1 Mailbox unavailable"),
        ("rcpt", "550 No such user here"),  # no enhanced code: RFC 5321's meaning holds
    ],
)
def test_a_refused_recipient_is_a_hard_bounce_and_suppressed(workspace, smtp_sink, stage, reply):
    script = smtp_sink.recorder.rcpt_replies if stage == "rcpt" else smtp_sink.recorder.replies
    script.append(reply)

    result = send(workspace, "gone@example.com")

    assert result["status"] == "blocked", result
    assert result["error"]["code"] == "recipient_rejected"
    assert result["message"].startswith("Recipient validation failed: hard_bounce")
    assert "self_correction" not in result
    status = tools.get_email_status(result["email_id"])
    assert status["self_corrections"] == []  # CX08 did not reschedule it
    assert status["delivery_attempts"] == 1 and status["retry_count"] == 0
    assert status["engagement"]["bounced"] is True
    assert status["engagement"]["bounce_type"] == "hard"
    (entry,) = tools.list_suppressions(workspace["workspace_id"])["suppressions"]
    assert (entry["email"], entry["reason"], entry["bounce_type"]) == (
        "gone@example.com",
        "bounced",
        "hard",
    )
    again = send(workspace, "Gone@Example.com")
    assert again["error"]["code"] == "suppressed"
    assert tools.send_due_emails()["due"] == 0
    assert smtp_sink.messages == [] or stage == "data"  # DATA was refused: nothing delivered


@pytest.mark.parametrize(
    "reply",
    ["550 5.7.1 Relaying denied", "554 5.7.1 Message rejected by policy", "552 5.2.2 Full"],
)
def test_a_refusal_about_policy_or_the_message_is_not_a_bounce(workspace, smtp_sink, reply):
    smtp_sink.recorder.rcpt_replies.append(reply)

    result = send(workspace, "someone@example.com")

    assert result["status"] == "scheduled", result  # CX08's one reschedule, as before
    assert result["error"]["code"] == "all_providers_failed"
    assert tools.list_suppressions(workspace["workspace_id"])["suppressions"] == []


def test_a_refused_copy_leaves_the_email_to_its_main_recipient(workspace, smtp_sink):
    smtp_sink.recorder.rcpt_replies.extend([ACCEPT, "550 5.1.1 No such user"])

    result = send(workspace, "bob@example.com", cc=["gone@example.com"])

    assert result["status"] == "sent", result
    assert tools.is_suppressed(workspace["workspace_id"], "bob@example.com") is False


def test_a_hard_bounce_over_http_is_400_with_its_code(api, workspace, smtp_sink):
    smtp_sink.recorder.rcpt_replies.append("550 5.1.1 No such user")

    body = {
        "circuit_execution_id": approve(workspace["workspace_id"]),
        "client_id": "550e8400-e29b-41d4-a716-446655440000",
        "recipient": "gone@example.com",
        "final_asset": ASSET,
    }

    reply = api.post("/api/circuits/agents/email/send", key=workspace["api_key"], json=body)

    assert reply.status_code == 400
    assert reply.json()["error"]["code"] == "recipient_rejected"
    assert reply.json()["status"] == "blocked"


def test_a_batch_records_a_hard_bounce_beside_the_others(workspace, smtp_sink):
    ids = [send(workspace, f"r{n}@example.com", respond_async=True)["email_id"] for n in range(3)]
    smtp_sink.recorder.rcpt_replies.extend([ACCEPT, "550 5.1.1 No such user", ACCEPT])

    became = send_stored_emails(ids)

    assert [became[i] for i in ids] == ["sent", "blocked", "sent"]
    assert tools.is_suppressed(workspace["workspace_id"], "r1@example.com") is True
    assert [m.rcpt_tos for m in smtp_sink.messages] == [["r0@example.com"], ["r2@example.com"]]
