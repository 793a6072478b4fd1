"""An operator sends an escalated email again, only when its record proves nothing was handed
over (every provider refused it): the same row, through every check, recorded with why; an
escalation that may have been delivered is never sent again."""

from __future__ import annotations

import hashlib
import threading
import time
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update

import tools
from persistence import DeliveryAttempt, EmailExecution, OperatorAction
from tests.builders import api_settings, send
from tests.fake_providers import resend_reply
from tests.observers import parse_message
from tests.redis_server import PrivateRedis
from tests.smtp_sink import HeldData
from tools import clock
from tools.send import send_stored_emails

REFUSED = "554 5.7.1 Message refused by policy"
FINGERPRINT = "0123456789ab"
NOTE = "mailbox restored, confirmed by phone"


def _escalate(workspace: dict[str, Any], runtime: Any, smtp_sink: Any, mocker: Any, recipient: str):
    """A send every provider refused twice (CX08 rescheduled it, then escalated it), with the
    clock left after the reschedule's delay; its email_id."""
    smtp_sink.recorder.rcpt_replies.extend([REFUSED] * 2)
    first = send(workspace, recipient)
    assert first["status"] == "scheduled", first
    later = clock.utcnow() + timedelta(seconds=runtime.settings.reschedule_delay_seconds + 1)
    mocker.patch("tools.clock.utcnow", return_value=later)
    assert tools.send_due_emails()["delivery_failed"] == 1
    status = tools.get_email_status(first["email_id"])
    assert (status["status"], status["error_code"]) == ("escalated", "all_providers_failed")
    return first["email_id"]


def _row(email_id: str) -> EmailExecution:
    with tools.get_runtime().read_sessions() as session:
        return session.get(EmailExecution, email_id)


def _recorded() -> list[tuple[str, str, str, str | None]]:
    with tools.get_runtime().read_sessions() as session:
        rows = session.scalars(select(OperatorAction).order_by(OperatorAction.created_at))
        return [(r.action, r.subject, r.note, r.key_fingerprint) for r in rows]


def _executions() -> int:
    with tools.get_runtime().read_sessions() as session:
        return session.scalar(select(func.count()).select_from(EmailExecution))


def _state(email_id: str) -> tuple[Any, ...]:
    row = _row(email_id)
    return (row.status, row.error_code, row.reschedule_count, row.scheduled_for, row.updated_at)


def _offered(workspace: dict[str, Any], email_id: str) -> bool:
    """Whether the escalations list offers "send again" for the email."""
    (listed,) = tools.list_escalations(workspace["workspace_id"])["escalations"]
    assert listed["email_id"] == email_id
    return listed["can_send_again"]


def _corrections(email_id: str) -> list[str]:
    return [a["action"] for a in tools.get_email_status(email_id)["self_corrections"]]


def test_an_email_every_provider_refused_is_sent_again_once_and_recorded(
    workspace, runtime, smtp_sink, mocker
):
    email_id = _escalate(workspace, runtime, smtp_sink, mocker, "gone@example.com")
    assert _offered(workspace, email_id) is True

    result = tools.send_again(
        workspace["workspace_id"], email_id, NOTE, key_fingerprint=FINGERPRINT
    )

    assert result == {
        "success": True,
        "email_id": email_id,
        "status": "sent",
        "outcome": "sent",
        "action": {"at": clock.iso(clock.utcnow()), "note": NOTE, "key": FINGERPRINT},
    }
    [received] = smtp_sink.messages
    row = _row(email_id)
    assert parse_message(received.data)["Message-ID"] == row.message_id
    assert received.rcpt_tos == ["gone@example.com"]
    assert (row.status, row.error_code, row.last_error) == ("sent", None, None)
    assert row.reschedule_count == 2  # a third delivery round, with its own provider key
    assert _executions() == 1  # the same row: (workspace, execution, recipient) holds
    assert _recorded() == [("send_again", email_id, NOTE, FINGERPRINT)]
    assert _corrections(email_id) == ["reschedule", "escalate"]
    listed = tools.list_escalations(workspace["workspace_id"], include_acknowledged=True)
    assert listed["escalations"] == []
    assert tools.send_due_emails()["due"] == 0  # nothing left to send: it went once


def test_a_round_sent_again_has_its_own_provider_key(
    workspace, settings, smtp_sink, resend_fake, mocker
):
    runtime = tools.configure(settings.replace(**api_settings(resend=resend_fake)))
    resend_fake.script.extend([resend_reply(422, "invalid_parameter")] * 2)
    email_id = _escalate(workspace, runtime, smtp_sink, mocker, "gone@example.com")

    result = tools.send_again(workspace["workspace_id"], email_id, NOTE)

    assert (result["status"], result["outcome"]) == ("sent", "sent")
    # Resend keeps a key's first body: a round sent again under an old key would be refused.
    assert [r.headers["idempotency-key"] for r in resend_fake.requests] == [
        f"{email_id}.0",
        f"{email_id}.1",
        f"{email_id}.2",
    ]
    assert len(resend_fake.delivered) == 1 and smtp_sink.messages == []


def test_failing_everywhere_again_escalates_again_for_an_operator(
    workspace, runtime, smtp_sink, mocker
):
    wid = workspace["workspace_id"]
    email_id = _escalate(workspace, runtime, smtp_sink, mocker, "gone@example.com")
    assert tools.acknowledge_escalation(wid, email_id, "asked the customer")["success"]
    smtp_sink.recorder.rcpt_replies.append(REFUSED)
    later = clock.utcnow() + timedelta(seconds=1)
    mocker.patch("tools.clock.utcnow", return_value=later)

    result = tools.send_again(wid, email_id, NOTE)

    assert result["success"] is True
    assert (result["status"], result["outcome"]) == ("escalated", "delivery_failed")
    row = _row(email_id)
    assert (row.status, row.error_code) == ("escalated", "all_providers_failed")
    assert _corrections(email_id) == ["reschedule", "escalate", "escalate"]
    assert tools.self_correct(email_id)["actions"][-1]["inputs"]["reschedule_count"] == 2
    assert tools.send_due_emails()["due"] == 0  # escalated, not rescheduled
    # The acknowledgement was about the escalation before: this one is listed as new, and
    # may be acknowledged in its turn.
    [listed] = tools.list_escalations(wid)["escalations"]
    assert (listed["email_id"], listed["acknowledged"]) == (email_id, None)
    mocker.patch("tools.clock.utcnow", return_value=later + timedelta(seconds=1))
    assert tools.acknowledge_escalation(wid, email_id, "still refused")["success"]
    assert tools.list_escalations(wid)["escalations"] == []
    assert smtp_sink.messages == []
    # Refused everywhere again, so nothing was handed over: it may be sent again once more.
    assert tools.send_again(wid, email_id, "domain fixed")["status"] == "sent"
    assert len(smtp_sink.messages) == 1


def test_an_unconfirmed_hand_over_is_refused_and_nothing_is_sent(workspace, settings, smtp_sink):
    tools.configure(settings.replace(timeout_seconds=1.0))
    held = HeldData(smtp_sink)  # the message is in; its answer comes after the client gave up
    try:
        escalated = send(workspace, "maybe@example.com")
    finally:
        held.release()
    assert escalated["error"]["code"] == "delivery_unconfirmed"
    email_id = escalated["email_id"]
    deadline = time.monotonic() + 30
    while not smtp_sink.messages:  # the held message is stored once released
        assert time.monotonic() < deadline
        time.sleep(0.02)
    smtp_sink.recorder.on_data = None
    before, sessions = _state(email_id), smtp_sink.recorder.sessions

    result = tools.send_again(workspace["workspace_id"], email_id, NOTE)

    assert result["success"] is False
    assert result["error"]["code"] == "not_resendable"
    assert "may have been delivered" in result["error"]["message"]
    assert _offered(workspace, email_id) is False
    assert _state(email_id) == before
    assert smtp_sink.recorder.sessions == sessions and len(smtp_sink.messages) == 1
    assert _recorded() == []


@pytest.mark.parametrize(
    "error_code,attempt_outcome",
    [
        ("internal_error", None),
        ("all_providers_failed", "ambiguous"),
        ("all_providers_failed", "sent"),
    ],
    ids=["crashed-delivery", "unanswered-attempt", "sent-attempt"],
)
def test_an_escalation_the_record_cannot_prove_unsent_is_refused(
    workspace, runtime, smtp_sink, mocker, error_code, attempt_outcome
):
    email_id = _escalate(workspace, runtime, smtp_sink, mocker, "gone@example.com")
    # What the record would say had the delivery crashed (`internal_error`), or had one
    # attempt been taken or gone unanswered.
    with runtime.engine.begin() as conn:
        conn.execute(
            update(EmailExecution)
            .where(EmailExecution.id == email_id)
            .values(error_code=error_code)
        )
        if attempt_outcome is not None:
            conn.execute(
                update(DeliveryAttempt)
                .where(
                    DeliveryAttempt.execution_id == email_id, DeliveryAttempt.attempt_number == 1
                )
                .values(outcome=attempt_outcome)
            )
    before = _state(email_id)

    result = tools.send_again(workspace["workspace_id"], email_id, NOTE)

    assert result["error"]["code"] == "not_resendable"
    assert _offered(workspace, email_id) is False
    assert _state(email_id) == before
    assert smtp_sink.messages == [] and _recorded() == []


def test_another_workspace_gets_not_found_and_nothing_changes(
    workspace, other_workspace, runtime, smtp_sink, mocker
):
    email_id = _escalate(workspace, runtime, smtp_sink, mocker, "gone@example.com")
    before = _state(email_id)

    stranger = tools.send_again(other_workspace["workspace_id"], email_id, NOTE)
    unknown = tools.send_again(
        workspace["workspace_id"], "8acf118d-da9a-45b0-9512-21f8143c6141", NOTE
    )

    for result in (stranger, unknown):
        assert result["error"] == {
            "code": "not_found",
            "message": "no such email in this workspace",
        }
    assert _state(email_id) == before
    assert smtp_sink.messages == [] and _recorded() == []


def test_an_email_sent_again_already_is_refused_the_second_time(
    workspace, runtime, smtp_sink, mocker
):
    wid = workspace["workspace_id"]
    email_id = _escalate(workspace, runtime, smtp_sink, mocker, "gone@example.com")
    assert tools.send_again(wid, email_id, NOTE)["status"] == "sent"

    again = tools.send_again(wid, email_id, "once more")

    assert again["error"]["code"] == "not_resendable"
    assert again["error"]["message"] == "this email is sent, not escalated"
    assert len(smtp_sink.messages) == 1
    assert [action for action, *_ in _recorded()] == ["send_again"]


def test_of_two_send_agains_at_the_same_moment_one_sends(workspace, runtime, smtp_sink, mocker):
    wid = workspace["workspace_id"]
    email_id = _escalate(workspace, runtime, smtp_sink, mocker, "gone@example.com")
    start = threading.Barrier(2)
    results: list[dict[str, Any]] = []

    def operator(note: str) -> None:
        start.wait()
        results.append(tools.send_again(wid, email_id, note))

    threads = [threading.Thread(target=operator, args=(n,)) for n in ("first", "second")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert sorted(r["success"] for r in results) == [False, True]
    [refused] = [r for r in results if not r["success"]]
    assert refused["error"]["code"] == "not_resendable"
    assert len(smtp_sink.messages) == 1 and _row(email_id).status == "sent"
    assert len(_recorded()) == 1


def test_a_recipient_suppressed_meanwhile_is_blocked_and_nothing_is_sent(
    workspace, runtime, smtp_sink, mocker
):
    wid = workspace["workspace_id"]
    email_id = _escalate(workspace, runtime, smtp_sink, mocker, "gone@example.com")
    assert tools.suppress(wid, "Gone@Example.com", "unsubscribed")["success"]

    result = tools.send_again(wid, email_id, NOTE)

    assert result["success"] is True
    assert (result["status"], result["outcome"]) == ("blocked", "blocked")
    row = _row(email_id)
    assert (row.status, row.error_code) == ("blocked", "suppressed")
    assert smtp_sink.messages == []
    assert _recorded() == [("send_again", email_id, NOTE, None)]


@pytest.fixture
def broker():
    server = PrivateRedis().start()
    yield server
    server.stop()


def test_with_a_task_queue_it_is_published_for_a_worker(
    workspace, runtime, settings, smtp_sink, broker, mocker
):
    email_id = _escalate(workspace, runtime, smtp_sink, mocker, "gone@example.com")
    tools.configure(settings.replace(celery_broker_url=broker.url))

    result = tools.send_again(workspace["workspace_id"], email_id, NOTE)

    assert (result["status"], result["outcome"]) == ("scheduled", "queued")
    assert broker.queued_messages() == 1
    assert _row(email_id).published_at == clock.utcnow()
    assert smtp_sink.messages == []
    # What the worker's task does with it.
    assert send_stored_emails([email_id]) == {email_id: "sent"}
    assert len(smtp_sink.messages) == 1


# The route -----------------------------------------------------------------------------


def test_the_route_sends_again_with_the_keys_fingerprint(
    api, workspace, other_workspace, runtime, smtp_sink, mocker
):
    key = workspace["api_key"]
    email_id = _escalate(workspace, runtime, smtp_sink, mocker, "gone@example.com")
    path = f"/api/email/escalations/{email_id}/send-again"
    note = {"note": NOTE}

    assert api.post(path, json=note).status_code == 401
    no_note = api.post(path, key=key, json={})
    assert no_note.status_code == 400 and no_note.json()["error"]["code"] == "missing_field"
    stranger = api.post(path, key=other_workspace["api_key"], json=note)
    assert stranger.status_code == 404 and _row(email_id).status == "escalated"

    done = api.post(path, key=key, json=note)

    assert done.status_code == 200, done.json()
    body = done.json()
    fingerprint = hashlib.sha256(key.encode()).hexdigest()[:12]
    assert (body["success"], body["status"], body["outcome"]) == (True, "sent", "sent")
    assert (body["action"]["note"], body["action"]["key"]) == (NOTE, fingerprint)
    assert len(smtp_sink.messages) == 1
    again = api.post(path, key=key, json=note)
    assert again.status_code == 409 and again.json()["error"]["code"] == "not_resendable"
    assert _recorded() == [("send_again", email_id, NOTE, fingerprint)]
