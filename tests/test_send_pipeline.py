"""The send pipeline end to end: what arrives at the SMTP server, and what is refused."""

from __future__ import annotations

import sqlite3
import uuid
from typing import Any

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.engine.base import RootTransaction
from sqlalchemy.exc import OperationalError

import tools
from persistence import DeliveryAttempt, EmailExecution, EmailMetrics
from tests.builders import ASSET, approve, send
from tests.observers import body_of, committed_statuses, parse_message

CLIENT = "550e8400-e29b-41d4-a716-446655440000"


def test_approved_email_arrives_once_with_headers_parts_and_footer(workspace, smtp_sink, runtime):
    result = send(workspace, "Bob@Example.com", cc=["carol@example.com"], bcc=["dave@example.com"])

    assert result["status"] == "sent", result
    assert "error" not in result
    assert result["execution_result"]["sent"] is True
    assert result["execution_result"]["provider"] == "smtp"
    assert result["execution_result"]["retry_count"] == 0
    assert result["circuit_validation"]["all_required_passed"] is True
    assert len(smtp_sink.messages) == 1
    received = smtp_sink.messages[0]
    assert received.mail_from == "news@acme.example"
    assert sorted(received.rcpt_tos) == ["Bob@example.com", "carol@example.com", "dave@example.com"]

    message = parse_message(received.data)
    assert message["Subject"] == ASSET["subject"]
    assert message["From"] == "Acme News <news@acme.example>"
    assert message["To"] == "Bob@example.com"
    assert message["Cc"] == "carol@example.com"
    assert message["Bcc"] is None  # blind copies travel in the envelope only
    assert message["Message-ID"] == f"<{result['email_id']}@acme.example>"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    unsubscribe = message["List-Unsubscribe"]
    assert "<https://mail.example.test/api/email/unsubscribe?token=" in unsubscribe
    assert "<mailto:news@acme.example?subject=unsubscribe-" in unsubscribe

    html = body_of(message, "html")
    text = body_of(message, "plain")
    assert ASSET["html_body"] in html
    assert "display:none" in html and ASSET["preheader"] in html
    assert "1 Main Street<br>" in html and "Springfield, IL 62701" in html
    assert "Unsubscribe from these emails" in html
    assert text.startswith(ASSET["text_body"])
    assert "1 Main Street" in text and "Unsubscribe: https://mail.example.test/" in text


def test_send_is_recorded_with_attempt_and_metrics_row(workspace, smtp_sink, runtime):
    result = send(workspace)

    with runtime.sessions() as session:
        row = session.get(EmailExecution, result["email_id"])
        attempts = session.scalars(select(DeliveryAttempt)).all()
        metrics = session.scalars(select(EmailMetrics)).all()
    assert row.status == "sent" and row.sent and row.provider == "smtp"
    assert row.sent_at is not None and row.reserved_at is not None
    assert row.attempt_number == 1 and row.retry_count == 0 and row.last_error is None
    assert [(a.provider, a.outcome) for a in attempts] == [("smtp", "sent")]
    assert len(metrics) == 1 and metrics[0].execution_id == row.id
    assert metrics[0].provider_message_id == result["execution_result"]["provider_message_id"]


def test_asset_can_come_from_cx06_output_alone(workspace, smtp_sink, runtime):
    execution_id = approve(workspace["workspace_id"])
    result = tools.send_email(workspace["workspace_id"], CLIENT, execution_id, "bob@example.com")

    assert result["status"] == "sent", result
    assert parse_message(smtp_sink.messages[0].data)["Subject"] == ASSET["subject"]


def test_status_reports_the_sent_email(workspace, smtp_sink, runtime):
    result = send(workspace)
    status = tools.get_email_status(result["email_id"])

    assert status["found"] is True
    assert status["status"] == "sent"
    assert status["recipient"] == "bob@example.com"
    assert status["provider"] == "smtp"
    assert status["delivery_attempts"] == 1
    assert status["last_error"] is None
    assert status["engagement"]["delivered"] is False


def test_status_hides_other_workspaces_emails_and_unknown_ids(workspace, smtp_sink, runtime):
    result = send(workspace)
    other = tools.create_workspace("Other", "o@other.example", "2 Side Road, Townsville")

    assert tools.get_email_status(result["email_id"], other["workspace_id"])["found"] is False
    assert tools.get_email_status(str(uuid.uuid4()))["found"] is False
    assert tools.get_email_status("not-a-uuid")["error"]["code"] == "invalid_input"


def _assert_blocked(result: dict[str, Any], code: str, smtp_sink, runtime) -> None:
    assert result["status"] == "blocked", result
    assert result["error"]["code"] == code, result
    assert result["email_id"] is None
    assert smtp_sink.messages == []
    with runtime.sessions() as session:
        assert session.scalar(select(func.count()).select_from(EmailExecution)) == 0


@pytest.mark.parametrize("address", ["josé@example.com", "bob@exämple.com"])
def test_validation_and_sending_give_one_answer_for_an_address(
    address, workspace, smtp_sink, runtime
):
    wid = workspace["workspace_id"]

    checked = tools.validate_email(address)
    sent = tools.send_email(wid, CLIENT, approve(wid), address, ASSET)

    assert checked["valid"] is (sent["status"] == "sent"), (checked, sent)
    if not checked["valid"]:  # a non-ASCII local part: SMTPUTF8, which is not sent here
        assert checked["error_code"] == "smtputf8_required"
        assert checked["error"] in sent["error"]["message"]
        assert smtp_sink.messages == []
    else:  # a non-ASCII domain goes out as punycode
        assert smtp_sink.messages[0].rcpt_tos == ["bob@xn--exmple-cua.com"]


def test_content_over_the_limit_is_refused_in_the_seeds_words(workspace, smtp_sink, runtime):
    big = {**ASSET, "html_body": "x" * 100_001}
    wid = workspace["workspace_id"]

    result = tools.send_email(wid, CLIENT, approve(wid), "bob@example.com", big)

    assert result["error"]["code"] == "content_too_large"
    assert result["error"]["message"].startswith("Content exceeds email limit: ")
    assert smtp_sink.messages == []


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"workspace_id": None}, "missing_field"),
        ({"client_id": None}, "missing_field"),
        ({"circuit_execution_id": None}, "missing_field"),
        ({"recipient": None}, "missing_field"),
        ({"final_asset": {"html_body": "<p>x</p>"}}, "missing_field"),
        ({"final_asset": {"subject": "Hi"}}, "missing_field"),
        ({"client_id": "not-a-uuid"}, "invalid_input"),
        ({"workspace_id": "12345"}, "invalid_input"),
        ({"circuit_execution_id": "bad id with spaces"}, "invalid_input"),
        ({"final_asset": {**ASSET, "cta_url": "javascript:alert(1)"}}, "invalid_input"),
        ({"final_asset": {**ASSET, "unknown": 1}}, "invalid_input"),
        ({"scheduled_for": "2030-01-01T10:00:00"}, "invalid_input"),
        ({"final_asset": {**ASSET, "subject": ""}}, "invalid_input"),
        ({"recipient": "not-an-address"}, "invalid_recipient"),
        ({"cc": ["fine@example.com", "broken@"]}, "invalid_recipient"),
        ({"recipient": "josé@example.com"}, "invalid_recipient"),
        ({"final_asset": {**ASSET, "html_body": "x" * 100_001}}, "content_too_large"),
        (
            {"final_asset": {**ASSET, "html_body": "x" * 60_000, "text_body": "y" * 40_000}},
            "content_too_large",
        ),
        ({"workspace_id": str(uuid.uuid4())}, "unknown_workspace"),
    ],
)
def test_bad_input_is_blocked_with_its_code_and_nothing_is_sent(
    change, code, workspace, smtp_sink, runtime
):
    arguments = {
        "workspace_id": workspace["workspace_id"],
        "client_id": CLIENT,
        "circuit_execution_id": approve(workspace["workspace_id"]),
        "recipient": "bob@example.com",
        "final_asset": ASSET,
        **change,
    }
    _assert_blocked(tools.send_email(**arguments), code, smtp_sink, runtime)


def test_the_first_failing_check_is_the_one_reported(workspace, smtp_sink, runtime):
    # Bad recipient (step 2) and unapproved circuits (step 3): step 2 wins.
    result = tools.send_email(workspace["workspace_id"], CLIENT, "never_ran", "nope", ASSET)
    _assert_blocked(result, "invalid_recipient", smtp_sink, runtime)


def test_missing_circuit_blocks_and_lists_what_is_missing(workspace, smtp_sink, runtime):
    wid = workspace["workspace_id"]
    for code in ("CX01", "CX02", "CX03", "CX04", "CX06"):
        tools.record_circuit_result(wid, "exec_missing_cx05", code, True)
    result = tools.send_email(wid, CLIENT, "exec_missing_cx05", "bob@example.com", ASSET)

    _assert_blocked(result, "circuit_validation_failed", smtp_sink, runtime)
    assert result["error"]["missing_circuits"] == ["CX05_BRAND_GUARD"]
    assert result["circuit_validation"]["all_required_passed"] is False
    assert "CX06_GENERATION_EXECUTION" in result["circuit_validation"]["circuits_passed"]


def test_failed_circuit_blocks_until_a_rerun_passes(workspace, smtp_sink, runtime):
    wid = workspace["workspace_id"]
    execution_id = approve(wid)
    tools.record_circuit_result(wid, execution_id, "CX05_BRAND_GUARD", False)
    blocked = tools.send_email(wid, CLIENT, execution_id, "bob@example.com", ASSET)
    _assert_blocked(blocked, "circuit_validation_failed", smtp_sink, runtime)
    assert blocked["error"]["failed_circuits"] == ["CX05_BRAND_GUARD"]

    tools.record_circuit_result(wid, execution_id, "CX05", True)
    assert tools.send_email(wid, CLIENT, execution_id, "bob@example.com", ASSET)["status"] == "sent"


def test_engagement_and_self_correction_logs_change_neither_the_decision_nor_the_binding(
    workspace, smtp_sink, runtime
):
    wid = workspace["workspace_id"]
    execution_id = approve(wid)
    for code in ("CX07", "CX08"):  # logged after CX06, and failed
        assert tools.record_circuit_result(wid, execution_id, code, False)["success"]
    altered = {**ASSET, "subject": "Not what CX06 approved"}
    mismatch = tools.send_email(wid, CLIENT, execution_id, "bob@example.com", altered)
    _assert_blocked(mismatch, "content_mismatch", smtp_sink, runtime)

    result = tools.send_email(wid, CLIENT, execution_id, "bob@example.com", ASSET)
    assert result["status"] == "sent", result
    assert result["circuit_validation"]["failed_circuits"] == []
    assert len(result["circuit_validation"]["circuits_passed"]) == 6


def test_circuits_of_another_workspace_do_not_count(workspace, smtp_sink, runtime):
    other = tools.create_workspace("Other", "o@other.example", "2 Side Road, Townsville")
    execution_id = approve(other["workspace_id"])
    result = tools.send_email(
        workspace["workspace_id"], CLIENT, execution_id, "b@example.com", ASSET
    )
    _assert_blocked(result, "circuit_validation_failed", smtp_sink, runtime)


@pytest.mark.parametrize("field", ["subject", "html_body", "text_body", "preheader", "cta_url"])
def test_asset_that_differs_from_cx06_output_is_content_mismatch(
    field, workspace, smtp_sink, runtime
):
    original = {**ASSET, "cta_url": "https://acme.example/go"}
    altered = {**original, field: original[field] + "-edited-after-approval"}
    result = send(workspace, final_asset=altered, cx06_output=original)
    _assert_blocked(result, "content_mismatch", smtp_sink, runtime)


def test_without_cx06_output_and_without_asset_the_asset_is_missing(workspace, smtp_sink, runtime):
    execution_id = approve(workspace["workspace_id"], asset=None)
    result = tools.send_email(workspace["workspace_id"], CLIENT, execution_id, "b@example.com")
    _assert_blocked(result, "missing_field", smtp_sink, runtime)


def test_repeat_returns_first_result_and_sends_nothing_more(workspace, smtp_sink, runtime):
    execution_id = approve(workspace["workspace_id"])
    first = send(workspace, circuit_execution_id=execution_id)
    again = send(workspace, "BOB@example.com", circuit_execution_id=execution_id)

    assert first["status"] == "sent"
    assert again["error"]["code"] == "duplicate_send"
    assert again["duplicate"] is True
    assert again["email_id"] == first["email_id"]
    assert again["status"] == "sent"
    assert again["execution_result"] == first["execution_result"]
    assert len(smtp_sink.messages) == 1


def test_same_execution_may_go_to_a_different_recipient(workspace, smtp_sink, runtime):
    execution_id = approve(workspace["workspace_id"])
    assert send(workspace, "a@example.com", circuit_execution_id=execution_id)["status"] == "sent"
    assert send(workspace, "b@example.com", circuit_execution_id=execution_id)["status"] == "sent"
    assert len(smtp_sink.messages) == 2


def test_a_later_cx06_log_without_output_does_not_lift_the_content_binding(
    workspace, smtp_sink, runtime
):
    wid = workspace["workspace_id"]
    execution_id = approve(wid)
    tools.record_circuit_result(wid, execution_id, "CX06", True)  # passed again, no output
    altered = {**ASSET, "subject": "Something CX06 never wrote"}
    result = tools.send_email(wid, CLIENT, execution_id, "bob@example.com", altered)
    _assert_blocked(result, "content_mismatch", smtp_sink, runtime)


def test_the_row_says_sending_while_the_provider_has_the_message(workspace, smtp_sink, runtime):
    # Committed before the message can leave, whether the send opens its connection (the
    # first) or takes a pooled one (the second: there the commit comes after MAIL FROM).
    seen: list[list[str]] = []
    smtp_sink.recorder.on_data = lambda: seen.append(committed_statuses(runtime))
    first = send(workspace, "a@example.com")
    second = send(workspace, "b@example.com")

    assert seen == [["sending"], ["sent", "sending"]]
    assert smtp_sink.recorder.sessions == 1  # the second send did reuse the connection
    for result in (first, second):
        assert tools.get_email_status(result["email_id"])["status"] == "sent"


def test_the_reservation_is_committed_before_a_connection_is_opened(workspace, smtp_sink, runtime):
    # Connecting may take up to the timeout: the reservation must not hold its lock meanwhile.
    seen: list[list[str]] = []
    smtp_sink.recorder.on_ehlo = lambda: seen.append(committed_statuses(runtime))
    result = send(workspace)

    assert seen == [["sending"]]  # the first send: no pooled connection yet
    assert result["status"] == "sent"


def test_a_reservation_that_cannot_be_committed_sends_nothing_and_leaves_no_row(
    workspace, smtp_sink, runtime, mocker
):
    # On a pooled connection the commit comes after MAIL FROM. A commit that fails (a disk
    # error: a fault no input produces, hence the patch) comes before the hand-over, so nothing
    # may arrive and nothing may stay written, and the result says the database was the
    # trouble; the connection with the SMTP transaction it had begun is closed, not pooled.
    assert send(workspace, "first@example.com")["status"] == "sent"
    execution_id = approve(workspace["workspace_id"])
    fault = OperationalError("COMMIT", {}, sqlite3.OperationalError("disk I/O error"))
    failing_commit = mocker.patch.object(RootTransaction, "commit", side_effect=fault)
    result = send(workspace, circuit_execution_id=execution_id)
    mocker.stop(failing_commit)

    assert result["email_id"] is None and result["error"]["code"] == "storage_unavailable"
    assert "disk" not in str(result)  # the database's own message stays in the log
    assert [m.rcpt_tos for m in smtp_sink.messages] == [["first@example.com"]]
    with runtime.sessions() as session:
        rows = session.scalars(
            select(EmailExecution).where(EmailExecution.circuit_execution_id == execution_id)
        ).all()
    assert rows == []
    assert runtime.delivery.providers[0].idle_connections == 0

    again = send(workspace, circuit_execution_id=execution_id)  # not a duplicate: nothing was
    assert again["status"] == "sent", again
    assert [m.rcpt_tos for m in smtp_sink.messages][1:] == [["bob@example.com"]]


def test_the_reservation_commit_waits_for_the_disk_and_the_outcome_commit_does_not(
    workspace, smtp_sink, runtime
):
    execution_id = approve(workspace["workspace_id"])
    commits: list[tuple[int, int]] = []  # (PRAGMA synchronous, execution rows) at each commit

    def at_commit(connection: Any) -> None:
        driver = connection.connection.driver_connection
        level = driver.execute("PRAGMA synchronous").fetchone()[0]
        rows = driver.execute("SELECT count(*) FROM email_agent_executions").fetchone()[0]
        commits.append((level, rows))

    event.listen(runtime.engine, "commit", at_commit)
    try:
        result = send(workspace, circuit_execution_id=execution_id)
    finally:
        event.remove(runtime.engine, "commit", at_commit)

    assert result["status"] == "sent"
    assert commits == [(2, 1), (1, 1)]  # the reservation FULL, then the outcome NORMAL


def test_copies_are_sent_once_per_person(workspace, smtp_sink, runtime):
    result = send(
        workspace,
        "bob@example.com",
        cc=["carol@example.com", "CAROL@example.com", "bob@EXAMPLE.com"],
        bcc=["carol@example.com", "dave@example.com"],
    )
    assert result["status"] == "sent"
    assert sorted(smtp_sink.messages[0].rcpt_tos) == [
        "bob@example.com",
        "carol@example.com",
        "dave@example.com",
    ]


def test_an_outcome_the_database_cannot_take_is_reported_not_raised(
    workspace, smtp_sink, runtime, mocker
):
    # The database fails just after the hand-over (a disk error, hence the patch; with
    # PostgreSQL cut for real: tests/test_storage_faults.py).
    disk = OperationalError("UPDATE", {}, sqlite3.OperationalError("disk I/O error"))
    mocker.patch("tools.send.deliver.record", side_effect=disk)
    result = send(workspace)

    assert (result["status"], result["error"]["code"]) == ("sending", "delivery_unrecorded")
    assert result["execution_result"]["sent"] is True
    assert len(smtp_sink.messages) == 1
    assert committed_statuses(runtime) == ["sending"]  # left for the stalled-send sweep


def test_a_crash_whose_record_fails_too_raises_the_crash(workspace, smtp_sink, runtime, mocker):
    disk = OperationalError("UPDATE", {}, sqlite3.OperationalError("disk I/O error"))
    mocker.patch("tools.providers.smtp.build_mime", side_effect=RuntimeError("boom"))
    mocker.patch("tools.send.deliver.record", side_effect=disk)
    with pytest.raises(RuntimeError, match="boom"):
        send(workspace)
    assert committed_statuses(runtime) == ["sending"]  # left for the stalled-send sweep
    assert runtime.engine.pool.checkedout() == 0
