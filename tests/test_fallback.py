"""The chain SendGrid -> Resend -> SMTP: fallback order, and never one execution twice."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

import tools
from persistence import EmailExecution
from tests.builders import api_settings, make_settings, outgoing_email, send
from tests.fake_http import Drop, Slow
from tests.fake_providers import resend_reply, sendgrid_reply
from tests.observers import attempt_rows
from tools import clock
from tools.providers.base import (
    Accepted,
    CommitsWhileConnected,
    OutgoingEmail,
    RetryableProviderError,
)
from tools.providers.chain import DeliveryChain

SG_503 = sendgrid_reply(503, "Service Unavailable")
RS_429 = resend_reply(
    429,
    "rate_limit_exceeded",
    {
        "ratelimit-limit": "2",
        "ratelimit-remaining": "0",
        "ratelimit-reset": "1",
        "retry-after": "0",
    },
)


@pytest.fixture
def chain(sendgrid_fake, resend_fake, smtp_sink, sqlite_url, tmp_path):
    """All three providers configured; returns a function that (re)configures with overrides."""

    def configure(**overrides: Any) -> dict[str, Any]:
        tools.configure(
            make_settings(
                sqlite_url,
                smtp_sink,
                tmp_path,
                **{"timeout_seconds": 0.4, **api_settings(sendgrid_fake, resend_fake), **overrides},
            )
        )
        return tools.create_workspace("Acme", "news@acme.example", "1 Main Street, Springfield")

    yield configure
    tools.shutdown()


def _attempts(email_id: str) -> list[tuple[str, int, str, int | None]]:
    return [
        (a.provider, a.attempt_number, a.outcome, a.status_code) for a in attempt_rows(email_id)
    ]


def _deliveries(sendgrid_fake, resend_fake, smtp_sink) -> dict[str, int]:
    return {
        "sendgrid": len(sendgrid_fake.delivered),
        "resend": len(resend_fake.delivered),
        "smtp": len(smtp_sink.messages),
    }


def test_sendgrid_503_twice_then_resend_429_then_200_delivers_once_through_resend(
    chain, sendgrid_fake, resend_fake, smtp_sink
):
    workspace = chain(max_retries=1)
    sendgrid_fake.script.extend([SG_503, SG_503])
    resend_fake.script.append(RS_429)

    result = send(workspace)

    assert result["status"] == "sent", result
    assert result["execution_result"]["provider"] == "resend"
    assert _deliveries(sendgrid_fake, resend_fake, smtp_sink) == {
        "sendgrid": 0,
        "resend": 1,
        "smtp": 0,
    }
    assert _attempts(result["email_id"]) == [
        ("sendgrid", 1, "transient_error", 503),
        ("sendgrid", 2, "transient_error", 503),
        ("resend", 3, "transient_error", 429),
        ("resend", 4, "sent", 200),
    ]
    with tools.get_runtime().sessions() as session:
        row = session.get(EmailExecution, result["email_id"])
    # One retry at SendGrid and one at Resend: retries across the whole delivery.
    assert (row.provider, row.attempt_number, row.retry_count) == ("resend", 4, 2)
    assert row.provider_message_id == resend_fake.delivered[0]["message_id"]
    # Both Resend requests carried the same key: a repeat could not have sent twice.
    keys = {r.headers["idempotency-key"] for r in resend_fake.requests}
    assert keys == {f"{result['email_id']}.0"}


def test_a_permanent_refusal_moves_straight_to_the_next_provider(
    chain, sendgrid_fake, resend_fake, smtp_sink
):
    workspace = chain()
    sendgrid_fake.script.append(sendgrid_reply(400, "bad"))
    resend_fake.script.append(resend_reply(403, "validation_error"))

    result = send(workspace)

    assert result["status"] == "sent" and result["execution_result"]["provider"] == "smtp"
    assert [(p, o) for p, _, o, _ in _attempts(result["email_id"])] == [
        ("sendgrid", "permanent_error"),
        ("resend", "permanent_error"),
        ("smtp", "sent"),
    ]
    assert _deliveries(sendgrid_fake, resend_fake, smtp_sink)["smtp"] == 1


@pytest.mark.parametrize("step", [Slow(1.0), Drop(accept=True)], ids=["slow", "dropped"])
def test_unanswered_sendgrid_request_is_never_followed_by_another_provider(
    chain, sendgrid_fake, resend_fake, smtp_sink, step
):
    workspace = chain()
    sendgrid_fake.script.append(step)

    result = send(workspace)

    assert result["status"] == "escalated", result
    assert result["error"]["code"] == "delivery_unconfirmed"
    assert _attempts(result["email_id"]) == [("sendgrid", 1, "ambiguous", None)]
    assert _deliveries(sendgrid_fake, resend_fake, smtp_sink) == {
        "sendgrid": 1,
        "resend": 0,
        "smtp": 0,
    }
    # Not rescheduled either: the worker has nothing to send.
    assert tools.send_due_emails()["due"] == 0


@pytest.mark.parametrize("step", [Slow(1.0), Drop(accept=True)], ids=["slow", "dropped"])
def test_unanswered_resend_request_is_asked_again_with_its_key_and_arrives_once(
    chain, sendgrid_fake, resend_fake, smtp_sink, step
):
    workspace = chain(retry_initial_delay=0.7)  # the slow first answer is out by the retry
    sendgrid_fake.script.append(sendgrid_reply(400, "bad"))
    resend_fake.script.append(step)

    result = send(workspace)

    assert result["status"] == "sent", result
    assert [(p, o) for p, _, o, _ in _attempts(result["email_id"])] == [
        ("sendgrid", "permanent_error"),
        ("resend", "ambiguous"),
        ("resend", "sent"),
    ]
    assert _deliveries(sendgrid_fake, resend_fake, smtp_sink) == {
        "sendgrid": 0,
        "resend": 1,
        "smtp": 0,
    }
    assert (
        result["execution_result"]["provider_message_id"] == resend_fake.delivered[0]["message_id"]
    )


def test_resend_unanswered_on_every_retry_stops_before_smtp(
    chain, sendgrid_fake, resend_fake, smtp_sink
):
    workspace = chain(sendgrid_api_key=None)
    resend_fake.script.extend([Drop(accept=True), Drop(accept=False), Drop(accept=False)])

    result = send(workspace)

    assert result["status"] == "escalated", result
    assert [o for _, _, o, _ in _attempts(result["email_id"])] == ["ambiguous"] * 3
    assert _deliveries(sendgrid_fake, resend_fake, smtp_sink) == {
        "sendgrid": 0,
        "resend": 1,
        "smtp": 0,
    }


def test_the_development_server_is_never_a_fallback_behind_a_real_provider(
    sendgrid_fake, smtp_sink, sqlite_url, tmp_path
):
    runtime = tools.configure(
        make_settings(
            sqlite_url, smtp_sink, tmp_path, smtp_server=None, **api_settings(sendgrid_fake)
        )
    )
    try:
        assert runtime.delivery.names == ["sendgrid"]
        assert runtime.dev_server is None
    finally:
        tools.shutdown()
    runtime = tools.configure(make_settings(sqlite_url, smtp_sink, tmp_path, smtp_server=None))
    try:
        assert runtime.delivery.names == ["smtp"] and runtime.dev_server is not None
    finally:
        tools.shutdown()


def test_a_closed_runtime_starts_no_providers(smtp_sink, sqlite_url, tmp_path):
    runtime = tools.configure(make_settings(sqlite_url, smtp_sink, tmp_path, smtp_server=None))
    tools.shutdown()

    # A thread still sending as the process shuts down: no server started behind close().
    with pytest.raises(RuntimeError, match="closed"):
        _ = runtime.delivery
    assert runtime.dev_server is None


def test_a_chain_that_cannot_be_built_leaves_no_development_server_running(
    mocker, smtp_sink, sqlite_url, tmp_path
):
    from tools.dev_smtp_server import LocalSMTPServer
    from tools.providers.smtp import SMTPProvider

    stopped = mocker.spy(LocalSMTPServer, "stop")
    broken = mocker.patch.object(SMTPProvider, "__init__", side_effect=OSError("no sockets left"))
    runtime = tools.configure(make_settings(sqlite_url, smtp_sink, tmp_path, smtp_server=None))
    try:
        with pytest.raises(OSError, match="no sockets left"):
            _ = runtime.delivery
        assert stopped.call_count == 1 and runtime.dev_server is None

        mocker.stop(broken)  # the next send tries again, from the start
        assert runtime.delivery.names == ["smtp"] and runtime.dev_server is not None
    finally:
        tools.shutdown()
    assert stopped.call_count == 2


class _CommitsLateAndDropsFirst(CommitsWhileConnected):
    """Fails its first call before it got to commit (its pooled connection was gone)."""

    name = "flaky"

    def __init__(self, events: list[str]) -> None:
        self.events = events
        self.calls = 0

    def send(self, email: OutgoingEmail) -> Accepted:
        raise AssertionError("the chain must let this provider commit")

    def send_committing(self, email: OutgoingEmail, commit: Callable[[], None]) -> Accepted:
        self.calls += 1
        if self.calls == 1:
            raise RetryableProviderError("the pooled connection was gone")
        commit()
        self.events.append("handed over")
        return Accepted("id-1", 250)


def test_a_failed_attempt_commits_the_reservation_before_the_backoff():
    # A reservation that waited through the backoff would hold its lock (every other send of
    # the database or workspace) for seconds.
    events: list[str] = []

    def commit() -> None:  # once, as the reservation's own commit
        if "commit" not in events:
            events.append("commit")

    chain = DeliveryChain(
        [_CommitsLateAndDropsFirst(events)],
        max_retries=1,
        initial_delay=2.0,
        sleep=lambda seconds: events.append(f"wait {seconds}"),
    )
    outcome = chain.deliver(outgoing_email(), commit=commit)

    assert outcome.sent
    assert events == ["commit", "wait 2.0", "handed over"]


def test_every_attempt_of_a_round_sends_the_same_body(chain, sendgrid_fake, resend_fake):
    # A provider refuses one idempotency key with a different body: a retry must not re-render
    # (a new unsubscribe token would change it).
    workspace = chain(max_retries=1)
    sendgrid_fake.script.append(sendgrid_reply(400, "bad"))
    resend_fake.script.append(resend_reply(503, "application_error"))

    assert send(workspace)["execution_result"]["provider"] == "resend"
    first, second = resend_fake.requests
    assert first.raw == second.raw
    assert first.headers["idempotency-key"] == second.headers["idempotency-key"]


def test_retry_count_adds_up_the_retries_of_every_round(workspace, smtp_sink, runtime, mocker):
    smtp_sink.recorder.replies.extend(["451 4.3.0 try again later"] * 3)  # round 1: 3 calls
    failed = send(workspace)
    assert failed["status"] == "scheduled" and failed["execution_result"]["retry_count"] == 2
    later = clock.utcnow() + timedelta(seconds=runtime.settings.reschedule_delay_seconds + 1)
    mocker.patch("tools.clock.utcnow", return_value=later)
    smtp_sink.recorder.replies.append("451 4.3.0 try again later")  # round 2: 1 retry, then sent

    assert tools.send_due_emails()["sent"] == 1

    status = tools.get_email_status(failed["email_id"])
    assert (status["retry_count"], status["delivery_attempts"]) == (3, 5)
    assert len(smtp_sink.messages) == 1
