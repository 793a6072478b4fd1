"""SMTP delivery against a real aiosmtpd server: retries, failures, timeouts, connection reuse."""

from __future__ import annotations

import socket
import threading
import time

import pytest

import tools
from persistence import EmailExecution
from tests.builders import make_settings, send
from tests.observers import attempt_rows, committed_statuses
from tests.smtp_sink import DROP, HANG_UP, HeldData
from tools.providers.smtp import data_payload


def test_transient_4xx_is_retried_with_exponential_backoff(smtp_sink, sqlite_url, tmp_path):
    waits: list[float] = []
    tools.configure(
        make_settings(sqlite_url, smtp_sink, tmp_path, retry_initial_delay=0.1), sleep=waits.append
    )
    try:
        workspace = tools.create_workspace("W", "w@w.example", "1 Road, Town")
        smtp_sink.recorder.replies.extend(["451 4.3.0 try again later", "452 4.3.1 no space"])
        result = send(workspace)

        assert result["status"] == "sent", result
        assert result["execution_result"]["retry_count"] == 2
        assert len(smtp_sink.messages) == 1
        assert waits == [0.1, 0.2]  # the initial delay, then doubled
        attempts = attempt_rows(result["email_id"])
        assert [(a.outcome, a.status_code) for a in attempts] == [
            ("transient_error", 451),
            ("transient_error", 452),
            ("sent", 250),
        ]
    finally:
        tools.shutdown()


def test_permanent_5xx_fails_at_once_without_retrying(workspace, smtp_sink, runtime):
    smtp_sink.recorder.replies.append("554 5.6.0 message content rejected")
    result = send(workspace)

    # Failed on every provider (the only one): CX08 reschedules it once.
    assert result["status"] == "scheduled"
    assert result["self_correction"]["action"] == "reschedule"
    assert result["error"]["code"] == "all_providers_failed"
    assert "554" in result["error"]["message"]
    assert result["execution_result"] == {
        "sent": False,
        "provider": "smtp",
        "provider_message_id": None,
        "sent_at": None,
        "retry_count": 0,
        "attempts": 1,
    }
    assert smtp_sink.messages == []
    status = tools.get_email_status(result["email_id"])
    assert status["status"] == "scheduled" and "554" in status["last_error"]


def test_transient_failures_beyond_the_retry_budget_fail_the_send(workspace, smtp_sink, runtime):
    smtp_sink.recorder.replies.extend(["421 4.3.2 shutting down"] * 3)
    result = send(workspace)

    assert result["status"] == "scheduled"
    assert result["execution_result"]["retry_count"] == 2
    assert len(attempt_rows(result["email_id"])) == 3
    assert smtp_sink.messages == []
    # The provider reconnects after the server closed the session: the next send goes through.
    assert send(workspace, "next@example.com")["status"] == "sent"


def test_unreachable_server_is_retried_then_recorded_as_failed(smtp_sink, sqlite_url, tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free_port = probe.getsockname()[1]
    tools.configure(make_settings(sqlite_url, smtp_sink, tmp_path, smtp_port=free_port))
    try:
        workspace = tools.create_workspace("W", "w@w.example", "1 Road, Town")
        result = send(workspace)
        runtime = tools.get_runtime()
        assert result["status"] == "scheduled"
        assert "connection" in result["error"]["message"].lower()
        assert [a.outcome for a in attempt_rows(result["email_id"])] == ["transient_error"] * 3
        with runtime.sessions() as session:
            row = session.get(EmailExecution, result["email_id"])
        assert (
            row.status == "scheduled"
            and row.last_error
            and row.error_code == "all_providers_failed"
        )
    finally:
        tools.shutdown()


def test_a_server_that_never_answers_times_out(smtp_sink, sqlite_url, tmp_path):
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    accepted: list[socket.socket] = []
    stop = threading.Event()
    waits: list[float] = []

    def accept_and_stay_silent() -> None:
        silent.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(silent.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept_and_stay_silent, daemon=True)
    thread.start()
    tools.configure(
        make_settings(
            sqlite_url,
            smtp_sink,
            tmp_path,
            smtp_port=silent.getsockname()[1],
            timeout_seconds=0.2,
            max_retries=1,
        ),
        sleep=waits.append,
    )
    try:
        workspace = tools.create_workspace("W", "w@w.example", "1 Road, Town")
        result = send(workspace)
        assert result["status"] == "scheduled"
        assert "timed out" in result["error"]["message"]
        # Two attempts, each cut off by the timeout (not a hang), one wait between them.
        attempts = attempt_rows(result["email_id"])
        assert [a.outcome for a in attempts] == ["transient_error"] * 2
        assert all("timed out" in a.error for a in attempts)
        assert waits == [0.01]
    finally:
        tools.shutdown()
        stop.set()
        thread.join()
        for conn in accepted:
            conn.close()
        silent.close()


def test_one_connection_is_reused_for_many_sends(workspace, smtp_sink, runtime):
    for i in range(5):
        assert send(workspace, f"user{i}@example.com")["status"] == "sent"
    assert len(smtp_sink.messages) == 5
    assert smtp_sink.recorder.sessions == 1


class _Clock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def aging(settings):
    """The tools on a clock of the test's for the SMTP pool's idle connections."""
    clock = _Clock()
    yield tools.configure(settings, monotonic=clock), clock
    tools.shutdown()


def test_idle_connection_is_replaced_before_sending(aging, smtp_sink):
    _, clock = aging
    workspace = tools.create_workspace("W", "w@w.example", "1 Road, Town")
    assert send(workspace, "a@example.com")["status"] == "sent"
    clock.now += 30  # still trusted
    assert send(workspace, "b@example.com")["status"] == "sent"
    assert smtp_sink.recorder.sessions == 1
    clock.now += 3600  # idle for an hour
    assert send(workspace, "c@example.com")["status"] == "sent"
    assert smtp_sink.recorder.sessions == 2


def test_a_stale_connection_says_quit_only_after_the_reservation_is_committed(aging, smtp_sink):
    # A server that dropped the session may never answer QUIT: that wait (up to the timeout)
    # must not hold the reservation's lock.
    runtime, clock = aging
    workspace = tools.create_workspace("W", "w@w.example", "1 Road, Town")
    assert send(workspace, "a@example.com")["status"] == "sent"
    clock.now += 3600
    seen: list[list[str]] = []
    smtp_sink.recorder.on_quit = lambda: seen.append(committed_statuses(runtime))

    assert send(workspace, "b@example.com")["status"] == "sent"
    assert seen == [["sent", "sending"]]


def test_connections_are_shared_by_threads_and_not_left_open_per_thread(
    workspace, smtp_sink, runtime
):
    from concurrent.futures import ThreadPoolExecutor

    for i in range(10):  # ten short-lived threads, one after another
        thread = threading.Thread(target=send, args=(workspace, f"seq{i}@example.com"))
        thread.start()
        thread.join()
    assert smtp_sink.recorder.sessions == 1
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda i: send(workspace, f"t{i}@example.com"), range(16)))
    assert all(r["status"] == "sent" for r in results)
    assert len(smtp_sink.messages) == 26
    assert smtp_sink.recorder.sessions <= 4
    assert runtime.delivery.providers[0].idle_connections <= 4


def test_refused_main_recipient_sends_nothing_to_the_copies(workspace, smtp_sink, runtime):
    smtp_sink.recorder.rcpt_replies.append("550 5.1.1 no such user")
    result = send(workspace, "gone@example.com", cc=["carol@example.com"])

    assert result["status"] == "blocked"  # a hard bounce (tests/test_hard_bounce.py)
    assert result["error"]["code"] == "recipient_rejected"
    assert "550" in result["error"]["message"]
    assert result["execution_result"]["retry_count"] == 0
    assert smtp_sink.messages == []


def test_refused_sender_fails_at_once_and_a_busy_one_is_retried(workspace, smtp_sink, runtime):
    # The message is built while MAIL FROM is answered: the answer must still decide.
    smtp_sink.recorder.mail_replies.append("553 5.7.1 sender not allowed")
    refused = send(workspace, "a@example.com")
    assert refused["status"] == "scheduled"
    assert "553" in refused["error"]["message"]
    assert refused["execution_result"]["retry_count"] == 0

    smtp_sink.recorder.mail_replies.append("451 4.3.0 try again")
    retried = send(workspace, "b@example.com")
    assert retried["status"] == "sent"
    assert retried["execution_result"]["retry_count"] == 1
    assert [m.rcpt_tos for m in smtp_sink.messages] == [["b@example.com"]]


def test_a_message_that_fails_to_build_leaves_no_open_transaction_behind(
    workspace, smtp_sink, runtime, mocker
):
    # DATA is on its way when the message is built; a build that fails (a fault no input
    # produces, hence the patch) must not leave that half-open transaction on a reused
    # connection, where the next send's MAIL FROM would be refused as nested. The send itself
    # is escalated (a crash after the commit: never resent).
    broken = mocker.patch("tools.providers.smtp.build_mime", side_effect=RuntimeError("boom"))
    with pytest.raises(RuntimeError, match="boom"):
        send(workspace, "a@example.com")
    mocker.stop(broken)
    assert smtp_sink.messages == []
    assert runtime.delivery.providers[0].idle_connections == 0  # closed, not pooled
    [crashed] = tools.get_send_history(workspace["workspace_id"])["executions"]
    status = tools.get_email_status(crashed["email_id"])
    assert (status["status"], status["error_code"]) == ("escalated", "internal_error")

    assert send(workspace, "b@example.com")["status"] == "sent"
    assert [m.rcpt_tos for m in smtp_sink.messages] == [["b@example.com"]]
    assert smtp_sink.recorder.sessions == 2  # the connection of the failed build was closed


def test_a_connection_lost_before_the_sender_is_answered_is_retried(workspace, smtp_sink, runtime):
    # Nothing can have been delivered before DATA: a plain retry, not an unconfirmed delivery.
    smtp_sink.recorder.mail_replies.append(DROP)
    result = send(workspace)

    assert result["status"] == "sent", result
    assert result["execution_result"]["retry_count"] == 1
    assert [a.outcome for a in attempt_rows(result["email_id"])] == ["transient_error", "sent"]
    assert len(smtp_sink.messages) == 1
    assert smtp_sink.recorder.sessions == 2


def test_a_connection_lost_before_data_is_answered_is_retried(workspace, smtp_sink, runtime):
    # The message travels only after DATA's 354 reply: losing the connection before it is a
    # plain retry, not an unconfirmed delivery.
    smtp_sink.recorder.rcpt_replies.append(HANG_UP)
    result = send(workspace)

    assert result["status"] == "sent", result
    assert [a.outcome for a in attempt_rows(result["email_id"])] == ["transient_error", "sent"]
    assert len(smtp_sink.messages) == 1
    assert smtp_sink.recorder.sessions == 2


@pytest.mark.parametrize(
    ("message", "payload"),
    [
        (
            b"Subject: x\r\n\r\n.one\r\ntwo.\r\n.\r\n",
            b"Subject: x\r\n\r\n..one\r\ntwo.\r\n..\r\n.\r\n",
        ),
        (b".first line\r\n", b"..first line\r\n.\r\n"),
        (b"no final line end", b"no final line end\r\n.\r\n"),
    ],
    ids=["inner-lines", "first-line", "unterminated"],
)
def test_the_data_is_dot_stuffed_and_ends_with_the_dot_line(message, payload):
    # RFC 5321 4.5.2: otherwise a body line "." would end the message there.
    assert data_payload(message) == payload


def test_temporarily_refused_recipient_is_retried(workspace, smtp_sink, runtime):
    smtp_sink.recorder.rcpt_replies.append("450 4.2.1 mailbox busy")
    result = send(workspace)

    assert result["status"] == "sent"
    assert result["execution_result"]["retry_count"] == 1
    assert len(smtp_sink.messages) == 1


def test_lost_answer_after_data_is_not_retried_so_nothing_arrives_twice(
    smtp_sink, sqlite_url, tmp_path
):
    tools.configure(make_settings(sqlite_url, smtp_sink, tmp_path, timeout_seconds=2.0))
    held = HeldData(smtp_sink)  # the message is in; the answer comes after the client gave up
    try:
        workspace = tools.create_workspace("W", "w@w.example", "1 Road, Town")
        result = send(workspace)
        held.release()

        # Maybe delivered: CX08 escalates at once instead of rescheduling.
        assert result["status"] == "escalated"
        assert result["error"]["code"] == "delivery_unconfirmed"
        assert result["self_correction"]["action"] == "escalate"
        assert "may have been delivered" in result["error"]["message"]
        attempts = attempt_rows(result["email_id"])
        assert [a.outcome for a in attempts] == ["ambiguous"]  # and no second attempt
        deadline = time.monotonic() + 30
        while not smtp_sink.messages:  # the held message is stored once released
            assert time.monotonic() < deadline
            time.sleep(0.02)
        smtp_sink.recorder.on_data = None
        assert send(workspace, "other@example.com")["status"] == "sent"
        assert len(smtp_sink.messages) == 2  # the first arrived once, never again
    finally:
        held.release()
        tools.shutdown()
