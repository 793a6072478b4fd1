"""`get_execution_detail`: one email's whole story, the message as sent included, exactly as the
recipient's server received it."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

import tools
from persistence import ProviderEvent
from persistence.models import SentMessage
from tests.builders import ASSET, send
from tests.observers import body_of, parse_message
from tools import clock
from tools.circuits import GENERATION_CIRCUIT
from tools.schemas import REQUIRED_CIRCUITS
from tools.transcripts import store_transcript

# Made anew by every build of the message: not part of what is kept of it.
PER_BUILD = ("Content-Type", "Date")


def _detail(workspace: dict[str, Any], email_id: str) -> dict[str, Any]:
    detail = tools.get_execution_detail(workspace["workspace_id"], email_id)
    json.dumps(detail)  # JSON-ready as it is
    return detail


def _received_headers(raw: bytes) -> list[list[str]]:
    return [[name, str(value)] for name, value in parse_message(raw).items()]


def _message_rows() -> int:
    with tools.get_runtime().sessions() as session:
        return session.scalar(select(func.count()).select_from(SentMessage)) or 0


@pytest.fixture
def one_attempt_then_reschedule(runtime):
    """SMTP alone, no retries, CX08's reschedule after 300 s."""
    settings = runtime.settings.replace(max_retries=0, reschedule_delay_seconds=300.0)
    return tools.configure(settings)


def test_the_stored_message_is_the_one_the_smtp_server_received(workspace, smtp_sink):
    asset = {**ASSET, "subject": "Grüße: your account update, and a rather long subject line too"}
    result = send(workspace, cc=["carol@example.com"], bcc=["dave@example.com"], final_asset=asset)
    assert result["status"] == "sent", result

    detail = _detail(workspace, result["email_id"])

    [message] = detail["messages"]
    raw = smtp_sink.messages[0].data
    received = parse_message(raw)
    stored = dict(message["headers"])
    for name in ("Message-ID", "Subject", "From", "To", "Cc", "List-Unsubscribe"):
        assert stored[name] == str(received[name]), name
    # Every header, in order, but those each build makes anew; Bcc is never one.
    assert message["headers"] == [h for h in _received_headers(raw) if h[0] not in PER_BUILD]
    assert "Bcc" not in stored and b"dave@example.com" not in raw.split(b"\r\n\r\n")[0]
    assert stored["Subject"] == asset["subject"]
    assert stored["From"] == "Acme News <news@acme.example>"
    assert message["text_body"] == body_of(received, "plain")
    assert message["html_body"] == body_of(received, "html")
    assert message["delivery_round"] == 0 and message["attachments"] == []


def test_the_hashes_show_cx06_beside_what_was_sent(workspace, smtp_sink):
    result = send(workspace)
    detail = _detail(workspace, result["email_id"])

    cx06 = [c for c in detail["circuits"] if c["circuit_id"] == GENERATION_CIRCUIT]
    assert [c["circuit_id"] for c in detail["circuits"]] == list(REQUIRED_CIRCUITS)
    assert all(c["success"] and c["current"] for c in detail["circuits"])
    assert detail["hashes"] == {
        "cx06": cx06[0]["output_hash"],
        "accepted": detail["content_hash"],
        "sent": detail["messages"][0]["content_hash"],
        "match": True,
    }
    sent = detail["messages"][0]["content_hash"]
    assert detail["hashes"]["cx06"] is not None
    assert detail["hashes"]["cx06"] == detail["content_hash"] == sent


def test_attempts_are_listed_with_their_latency(workspace, smtp_sink):
    smtp_sink.recorder.replies.append("451 4.3.0 try again")
    result = send(workspace)
    assert result["status"] == "sent", result

    detail = _detail(workspace, result["email_id"])

    assert [(a["provider"], a["attempt_number"], a["outcome"]) for a in detail["attempts"]] == [
        ("smtp", 1, "transient_error"),
        ("smtp", 2, "sent"),
    ]
    first = detail["attempts"][0]
    assert first["status_code"] == 451 and "try again" in first["error"]
    assert all(a["latency_ms"] > 0 for a in detail["attempts"])
    assert detail["delivery_attempts"] == 2 and detail["status"] == "sent"
    assert detail["engagement"]["delivered"] is False
    assert detail["self_corrections"] == []


def test_a_round_that_failed_everywhere_and_the_round_after_it_are_both_shown(
    one_attempt_then_reschedule, workspace, smtp_sink, mocker
):
    start = clock.utcnow()
    smtp_sink.recorder.replies.append("554 5.7.1 rejected")
    first = send(workspace)
    assert first["status"] == "scheduled", first
    email_id = first["email_id"]

    now = mocker.patch("tools.clock.utcnow", return_value=start + timedelta(seconds=301))
    assert tools.send_due_emails()["sent"] == 1
    mocker.stop(now)
    detail = _detail(workspace, email_id)

    assert [(a["attempt_number"], a["outcome"]) for a in detail["attempts"]] == [
        (1, "permanent_error"),
        (2, "sent"),
    ]
    assert [a["action"] for a in detail["self_corrections"]] == ["reschedule"]
    assert detail["reschedule_count"] == 1 and detail["status"] == "sent"
    rounds = detail["messages"]
    assert [m["delivery_round"] for m in rounds] == [0, 1]
    # The second round is the one that arrived.
    received = parse_message(smtp_sink.messages[0].data)
    assert dict(rounds[1]["headers"])["List-Unsubscribe"] == str(received["List-Unsubscribe"])
    assert rounds[1]["text_body"] == body_of(received, "plain")
    assert rounds[0]["created_at"] < rounds[1]["created_at"]
    assert detail["hashes"]["match"] is True


def test_attachments_are_named_with_type_and_size(runtime, workspace, smtp_sink, tmp_path):
    folder = tmp_path / "attachments"
    folder.mkdir()
    (folder / "terms.txt").write_text("the terms")
    (folder / "price list.pdf").write_bytes(b"%PDF-1.4 " + b"x" * 100)
    tools.configure(runtime.settings.replace(attachments_dir=folder))

    result = send(workspace, attachments=["terms.txt", "price list.pdf"])
    assert result["status"] == "sent", result

    [message] = _detail(workspace, result["email_id"])["messages"]
    assert message["attachments"] == [
        {"filename": "terms.txt", "content_type": "text/plain", "size": 9},
        {"filename": "price list.pdf", "content_type": "application/pdf", "size": 109},
    ]
    received = parse_message(smtp_sink.messages[0].data)
    names = [part.get_filename() for part in received.iter_attachments()]
    assert names == ["terms.txt", "price list.pdf"]


def test_another_workspaces_email_and_an_unknown_id_are_not_found(
    workspace, other_workspace, smtp_sink
):
    email_id = send(workspace)["email_id"]

    for workspace_id, wanted in (
        (other_workspace["workspace_id"], email_id),
        (workspace["workspace_id"], str(uuid.uuid4())),
    ):
        result = tools.get_execution_detail(workspace_id, wanted)
        assert result["found"] is False and result["error"]["code"] == "not_found"
        assert "messages" not in result


def test_the_group_chat_transcripts_of_the_email_and_of_its_unsent_runs_appear(
    workspace, smtp_sink
):
    result = send(workspace)
    email_id, execution_id = result["email_id"], result["circuit_execution_id"]
    workspace_id = workspace["workspace_id"]
    earlier = store_transcript(workspace_id, execution_id, None, "max_turns", [{"n": 1}])
    own = store_transcript(workspace_id, execution_id, email_id, "sent", [{"n": 2}])
    store_transcript(workspace_id, "exec_elsewhere", None, "sent", [{"n": 3}])

    transcripts = _detail(workspace, email_id)["transcripts"]

    assert [(t["transcript_id"], t["email_id"]) for t in transcripts] == [
        (earlier, None),
        (own, email_id),
    ]
    assert transcripts[1]["messages"] == [{"n": 2}]


def test_events_are_listed_without_their_payload(workspace, smtp_sink):
    email_id = send(workspace)["email_id"]
    with tools.get_runtime().sessions.begin() as session:
        for kind, linked in (("delivered", email_id), ("opened", None)):
            session.add(
                ProviderEvent(
                    id=str(uuid.uuid4()),
                    provider="sendgrid",
                    dedup_key=f"key-{kind}",
                    event_type=kind,
                    kind=kind,
                    email_ref=email_id,
                    workspace_id=workspace["workspace_id"] if linked else None,
                    execution_id=linked,
                    payload={"secret": "raw provider payload"},
                    received_at=clock.utcnow(),
                )
            )

    detail = _detail(workspace, email_id)

    assert [(e["provider"], e["event_type"], e["kind"]) for e in detail["events"]] == [
        ("sendgrid", "delivered", "delivered")
    ]
    assert "raw provider payload" not in json.dumps(detail)


def test_a_crash_after_composing_keeps_the_message_and_the_operators_acknowledgement(
    workspace, smtp_sink, mocker
):
    later = clock.utcnow() + timedelta(minutes=5)
    email_id = send(workspace, scheduled_for=later.isoformat())["email_id"]
    runtime = tools.get_runtime()

    now = mocker.patch("tools.clock.utcnow", return_value=later + timedelta(seconds=1))
    crash = mocker.patch.object(runtime.delivery, "deliver", side_effect=RuntimeError("bug"))
    assert tools.send_due_emails()["delivery_failed"] == 1
    mocker.stop(crash)
    mocker.stop(now)
    acknowledged = tools.acknowledge_escalation(
        workspace["workspace_id"], email_id, "checked the sink: nothing arrived"
    )
    assert acknowledged["success"], acknowledged

    detail = _detail(workspace, email_id)

    assert detail["status"] == "escalated" and detail["error_code"] == "internal_error"
    # Whether it went is unknown: what may have gone is kept.
    assert [m["delivery_round"] for m in detail["messages"]] == [0]
    assert detail["attempts"] == []
    assert [(a["action"], a["note"]) for a in detail["operator_actions"]] == [
        ("acknowledge_escalation", "checked the sink: nothing arrived")
    ]


def test_a_crash_while_composing_and_a_round_every_provider_skipped_keep_no_message(
    runtime, workspace, smtp_sink, mocker
):
    later = clock.utcnow() + timedelta(minutes=5)
    crashed = send(workspace, "a@example.com", scheduled_for=later.isoformat())["email_id"]
    now = mocker.patch("tools.clock.utcnow", return_value=later + timedelta(seconds=1))
    crash = mocker.patch("tools.send.deliver.compose", side_effect=RuntimeError("bug"))
    assert tools.send_due_emails()["delivery_failed"] == 1
    mocker.stop(crash)
    mocker.stop(now)
    assert _detail(workspace, crashed)["status"] == "escalated"

    skipped = send(workspace, "b@example.com", scheduled_for=later.isoformat())["email_id"]
    now = mocker.patch("tools.clock.utcnow", return_value=later + timedelta(seconds=1))
    cooling = mocker.patch("tools.send.deliver.cooling_down", return_value={"smtp"})
    tools.send_due_emails()
    mocker.stop(cooling)
    mocker.stop(now)
    detail = _detail(workspace, skipped)
    assert detail["attempts"] == [] and "cooling down" in detail["last_error"]

    assert _message_rows() == 0 and smtp_sink.messages == []
