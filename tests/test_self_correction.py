"""CX08: the circuit breaker, the one reschedule, the escalation; each decision on record."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

import tools
from api import create_app
from persistence import EmailExecution, ProviderBreaker, SelfCorrectionAction, workspace_scope
from tests.builders import SIGNING_SECRET, api_settings, approve, make_settings, send
from tests.fake_providers import resend_reply, sendgrid_reply
from tests.observers import attempt_rows
from tests.processes import child_environment, wait_for_line
from tests.smtp_sink import HeldData
from tools import clock

REPO = Path(__file__).resolve().parent.parent
SG_503 = sendgrid_reply(503, "Service Unavailable")
SG_400 = sendgrid_reply(400, "bad request")


@pytest.fixture
def configure(sendgrid_fake, resend_fake, smtp_sink, sqlite_url, tmp_path):
    def build(**overrides: Any) -> dict[str, Any]:
        values = {
            "max_retries": 0,
            "breaker_failure_threshold": 2,
            "breaker_window_seconds": 60.0,
            "breaker_cooldown_seconds": 120.0,
            "reschedule_delay_seconds": 300.0,
            **api_settings(sendgrid_fake, resend_fake),
            **overrides,
        }
        tools.configure(make_settings(sqlite_url, smtp_sink, tmp_path, **values))
        return tools.create_workspace("Acme", "news@acme.example", "1 Main Street, Springfield")

    yield build
    tools.shutdown()


def _actions() -> list[tuple[str, str | None]]:
    with tools.get_runtime().sessions() as session:
        rows = session.scalars(
            select(SelfCorrectionAction).order_by(SelfCorrectionAction.created_at)
        ).all()
    return [(a.action, a.inputs.get("provider")) for a in rows]


def _breaker(provider: str) -> ProviderBreaker | None:
    with tools.get_runtime().sessions() as session:
        return session.get(ProviderBreaker, provider)


def test_breaker_opens_after_n_failures_skips_the_provider_then_closes(
    configure, sendgrid_fake, resend_fake, mocker
):
    workspace = configure()
    start = clock.utcnow()
    sendgrid_fake.script.extend([SG_503, SG_503])

    first = send(workspace, "a@example.com")
    assert first["execution_result"]["provider"] == "resend"
    assert _breaker("sendgrid").state == "closed"  # one failure: below the threshold
    second = send(workspace, "b@example.com")
    assert second["execution_result"]["provider"] == "resend"
    breaker = _breaker("sendgrid")
    assert breaker.state == "open"
    assert breaker.open_until - start >= timedelta(seconds=120)
    assert _actions() == [("open_breaker", "sendgrid")]

    # Cooling down: SendGrid is not even asked.
    asked = len(sendgrid_fake.requests)
    third = send(workspace, "c@example.com")
    assert third["status"] == "sent" and third["execution_result"]["provider"] == "resend"
    assert third["providers_skipped"] == ["sendgrid"]
    assert len(sendgrid_fake.requests) == asked

    # After the cool-down the next send tries SendGrid again; it answers, the breaker closes.
    now = mocker.patch("tools.clock.utcnow", return_value=start + timedelta(seconds=121))
    fourth = send(workspace, "d@example.com")
    mocker.stop(now)
    assert fourth["execution_result"]["provider"] == "sendgrid"
    assert _breaker("sendgrid").state == "closed"
    assert _actions() == [("open_breaker", "sendgrid"), ("close_breaker", "sendgrid")]


def test_a_due_send_skips_a_provider_that_is_cooling_down(
    configure, sendgrid_fake, resend_fake, mocker
):
    workspace = configure()
    start = clock.utcnow()
    later = (start + timedelta(seconds=30)).isoformat()
    scheduled = send(workspace, "later@example.com", scheduled_for=later)
    sendgrid_fake.script.extend([SG_503, SG_503])
    send(workspace, "a@example.com")
    send(workspace, "b@example.com")
    assert _breaker("sendgrid").state == "open"

    asked = len(sendgrid_fake.requests)
    now = mocker.patch("tools.clock.utcnow", return_value=start + timedelta(seconds=60))
    assert tools.send_due_emails()["sent"] == 1
    mocker.stop(now)
    assert tools.get_email_status(scheduled["email_id"])["provider"] == "resend"
    assert len(sendgrid_fake.requests) == asked  # not even asked


def test_a_failed_probe_reopens_the_breaker(configure, sendgrid_fake, mocker):
    workspace = configure(breaker_failure_threshold=1)
    start = clock.utcnow()
    sendgrid_fake.script.extend([SG_503, SG_503])
    send(workspace, "a@example.com")
    assert _breaker("sendgrid").state == "open"

    later = start + timedelta(seconds=121)
    now = mocker.patch("tools.clock.utcnow", return_value=later)
    result = send(workspace, "b@example.com")
    mocker.stop(now)
    assert result["execution_result"]["provider"] == "resend"
    breaker = _breaker("sendgrid")
    assert breaker.state == "open" and breaker.open_until >= later + timedelta(seconds=120)
    assert _actions() == [("open_breaker", "sendgrid"), ("reopen_breaker", "sendgrid")]


def test_failures_of_the_message_do_not_count_against_the_provider(configure, sendgrid_fake):
    workspace = configure(breaker_failure_threshold=1)
    sendgrid_fake.script.append(SG_400)
    result = send(workspace)

    assert result["execution_result"]["provider"] == "resend"
    assert _breaker("sendgrid") is None
    assert _actions() == []


def test_failures_outside_the_window_do_not_add_up(configure, sendgrid_fake, mocker):
    workspace = configure()
    start = clock.utcnow()
    sendgrid_fake.script.extend([SG_503, SG_503])
    send(workspace, "a@example.com")
    now = mocker.patch("tools.clock.utcnow", return_value=start + timedelta(seconds=61))
    send(workspace, "b@example.com")
    mocker.stop(now)
    assert _breaker("sendgrid").state == "closed"
    assert _breaker("sendgrid").failures == 1


def test_breaker_state_is_shared_through_the_database(configure, sendgrid_fake):
    workspace = configure(breaker_failure_threshold=1)
    sendgrid_fake.script.append(SG_503)
    send(workspace, "a@example.com")
    # A new runtime (as another worker would have) skips SendGrid too.
    configure(breaker_failure_threshold=1)
    asked = len(sendgrid_fake.requests)
    result = send(workspace, "b@example.com")
    assert result["execution_result"]["provider"] == "resend"
    assert len(sendgrid_fake.requests) == asked


def _fail_everywhere(sendgrid_fake, resend_fake, smtp_sink) -> None:
    sendgrid_fake.script.append(SG_400)
    resend_fake.script.append(resend_reply(422, "invalid_parameter"))
    smtp_sink.recorder.replies.append("554 5.7.1 rejected")


def test_total_failure_is_rescheduled_once_and_the_worker_sends_it(
    configure, sendgrid_fake, resend_fake, smtp_sink, mocker
):
    workspace = configure()
    start = clock.utcnow()
    _fail_everywhere(sendgrid_fake, resend_fake, smtp_sink)

    result = send(workspace)

    assert result["status"] == "scheduled", result
    assert result["error"]["code"] == "all_providers_failed"
    assert result["message"].startswith("All email providers failed; CX08: ")  # seed 001's words
    assert result["self_correction"]["action"] == "reschedule"
    email_id = result["email_id"]
    decision = tools.self_correct(email_id)
    assert decision["action"] == "reschedule" and decision["status"] == "scheduled"
    assert decision["scheduled_for"] is not None
    assert tools.send_due_emails()["due"] == 0  # not before the delay

    now = mocker.patch("tools.clock.utcnow", return_value=start + timedelta(seconds=301))
    assert tools.send_due_emails() == {
        "due": 1,
        "sent": 1,
        "delivery_failed": 0,
        "blocked": 0,
        "deferred": 0,
        "skipped": 0,
        "unrecorded": 0,
    }
    mocker.stop(now)
    status = tools.get_email_status(email_id)
    assert status["status"] == "sent" and status["provider"] == "sendgrid"
    assert status["delivery_attempts"] == 4
    assert [a["action"] for a in status["self_corrections"]] == ["reschedule"]
    # The second round numbers its attempts on from the first and has its own key.
    assert [a.attempt_number for a in attempt_rows(email_id)] == [1, 2, 3, 4]
    assert len(sendgrid_fake.delivered) == 1 and smtp_sink.messages == []


def test_second_total_failure_escalates(configure, sendgrid_fake, resend_fake, smtp_sink, mocker):
    workspace = configure(breaker_failure_threshold=100)
    start = clock.utcnow()
    _fail_everywhere(sendgrid_fake, resend_fake, smtp_sink)
    email_id = send(workspace)["email_id"]

    _fail_everywhere(sendgrid_fake, resend_fake, smtp_sink)
    now = mocker.patch("tools.clock.utcnow", return_value=start + timedelta(seconds=301))
    assert tools.send_due_emails()["delivery_failed"] == 1
    mocker.stop(now)
    # Resend saw a new key for the new round (its body changed: a fresh unsubscribe token).
    assert [r.headers["idempotency-key"] for r in resend_fake.requests] == [
        f"{email_id}.0",
        f"{email_id}.1",
    ]

    status = tools.get_email_status(email_id)
    assert status["status"] == "escalated"
    assert [a["action"] for a in status["self_corrections"]] == ["reschedule", "escalate"]
    decision = tools.self_correct(email_id)
    assert decision["action"] == "escalate" and "operator" in decision["reason"]
    assert decision["actions"][1]["inputs"]["reschedule_count"] == 1
    assert tools.send_due_emails()["due"] == 0
    assert sendgrid_fake.delivered == resend_fake.delivered == [] and smtp_sink.messages == []


def test_every_provider_cooling_down_means_no_attempt_and_a_reschedule(
    configure, sendgrid_fake, resend_fake, smtp_sink
):
    workspace = configure(breaker_failure_threshold=1)
    sendgrid_fake.script.append(SG_503)
    resend_fake.script.append(resend_reply(500, "application_error"))
    smtp_sink.recorder.replies.append("421 4.3.2 shutting down")
    first = send(workspace, "a@example.com")
    assert first["status"] == "scheduled"
    assert [a for a, _ in _actions()] == [
        "reschedule",
        "open_breaker",
        "open_breaker",
        "open_breaker",
    ]

    second = send(workspace, "b@example.com")
    assert second["status"] == "scheduled"
    assert second["providers_skipped"] == ["sendgrid", "resend", "smtp"]
    assert "cooling down" in second["error"]["message"]
    assert "execution_result" not in second  # no provider was asked


def test_self_correct_reports_none_for_a_sent_email_and_hides_other_workspaces(configure):
    workspace = configure()
    result = send(workspace)
    decision = tools.self_correct(result["email_id"])
    assert decision["found"] and decision["action"] == "none" and decision["actions"] == []

    other = tools.create_workspace("Other", "o@other.example", "2 Road, Town")
    hidden = tools.self_correct(result["email_id"], workspace_id=other["workspace_id"])
    assert hidden["found"] is False and hidden["error"]["code"] == "not_found"
    assert tools.self_correct("not-a-uuid")["error"]["code"] == "invalid_input"


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_concurrent_failures_are_all_counted(
    database, request, sendgrid_fake, resend_fake, smtp_sink, tmp_path
):
    """Workers recording failures at once lose none (row lock on PostgreSQL, write lock on
    SQLite), and the breaker row created by the first of them is shared, not duplicated."""
    url = request.getfixturevalue("postgres_url" if database == "postgresql" else "sqlite_url")
    values = {
        "max_retries": 0,
        "breaker_failure_threshold": 100,
        **api_settings(sendgrid_fake, resend_fake),
    }
    tools.configure(make_settings(url, smtp_sink, tmp_path, **values))
    try:
        workspace = tools.create_workspace("Acme", "news@acme.example", "1 Main Street, Town")
        threads = 8
        sendgrid_fake.script.extend([SG_503] * threads)
        barrier = threading.Barrier(threads)
        results: list[dict[str, Any]] = []

        def one(i: int) -> None:
            barrier.wait()
            results.append(send(workspace, f"user{i}@example.com"))

        workers = [threading.Thread(target=one, args=(i,)) for i in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()

        assert [r["execution_result"]["provider"] for r in results] == ["resend"] * threads
        assert _breaker("sendgrid").failures == threads
        assert len(resend_fake.delivered) == threads and sendgrid_fake.delivered == []
    finally:
        tools.shutdown()


_DIES_DURING_DELIVERY = textwrap.dedent(
    """
    import json, sys
    import tools
    from settings import load_settings
    from tests.builders import SIGNING_SECRET
    spec = json.loads(sys.argv[1])
    tools.configure(load_settings({}).replace(
        database_url=spec["url"], smtp_server="127.0.0.1",
        smtp_port=spec["port"], smtp_use_tls=False,
        signing_secret=SIGNING_SECRET))
    tools.send_email(**spec["call"])  # killed while the server holds back its answer to DATA
    """
)


def _send_and_die(url: str, call: dict[str, Any], sink: Any) -> None:
    """Send from another process and kill it (SIGKILL) once the server has the message."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    spec = json.dumps({"url": url, "port": sink.port, "call": call})
    before = len(sink.messages)
    process = subprocess.Popen([sys.executable, "-c", _DIES_DURING_DELIVERY, spec], env=env)
    try:
        deadline = time.monotonic() + 60
        while len(sink.messages) == before:
            assert process.poll() is None, "the sending process ended before it was killed"
            assert time.monotonic() < deadline, "the message never reached the server"
            time.sleep(0.02)
    finally:
        process.kill()
        process.wait(10)


def test_a_send_whose_process_died_during_delivery_is_escalated_by_the_worker_never_resent(
    runtime, settings, workspace, smtp_sink, monkeypatch, mocker
):
    import main

    wid = workspace["workspace_id"]
    execution_id = approve(wid)
    call = {
        "workspace_id": wid,
        "client_id": str(uuid.uuid4()),
        "circuit_execution_id": execution_id,
        "recipient": "bob@example.com",
    }
    smtp_sink.recorder.data_delay = 30.0
    _send_and_die(settings.database_url, call, smtp_sink)
    smtp_sink.recorder.data_delay = 0.0

    history = tools.get_send_history(wid)["executions"]
    assert [e["status"] for e in history] == ["sending"]
    email_id = history[0]["email_id"]
    assert tools.escalate_stalled_sends() == 0  # it could still be in progress
    tools.shutdown()
    for name in [n for n in os.environ if n.startswith(("SMTP_", "EMAIL_"))]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("EMAIL_LOG_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("EMAIL_SIGNING_SECRET", SIGNING_SECRET)
    later = clock.utcnow() + timedelta(seconds=3601)

    now = mocker.patch("tools.clock.utcnow", return_value=later)
    assert main.main(["worker", "--once"]) == 0
    mocker.stop(now)

    tools.configure(settings)
    status = tools.get_email_status(email_id)
    assert status["status"] == "escalated" and status["error_code"] == "delivery_unconfirmed"
    decision = tools.self_correct(email_id)
    assert decision["action"] == "escalate" and "process stopped" in decision["reason"]
    assert decision["actions"][0]["inputs"]["stalled_send_seconds"] == 3600
    repeat = tools.send_email(**call)
    assert repeat["error"]["code"] == "duplicate_send" and repeat["status"] == "escalated"
    now = mocker.patch("tools.clock.utcnow", return_value=later)
    assert tools.escalate_stalled_sends() == 0  # once only
    mocker.stop(now)
    assert len(smtp_sink.messages) == 1


def test_concurrent_sweeps_escalate_each_stalled_send_once_on_postgresql(
    postgres_url, smtp_sink, tmp_path, mocker
):
    tools.configure(make_settings(postgres_url, smtp_sink, tmp_path))
    try:
        wid = tools.create_workspace("Acme", "news@acme.example", "1 Main Street")["workspace_id"]
        execution_id = approve(wid)
        smtp_sink.recorder.data_delay = 30.0
        for i in range(3):
            call = {
                "workspace_id": wid,
                "client_id": str(uuid.uuid4()),
                "circuit_execution_id": execution_id,
                "recipient": f"r{i}@example.com",
            }
            _send_and_die(postgres_url, call, smtp_sink)
        smtp_sink.recorder.data_delay = 0.0
        later = clock.utcnow() + timedelta(seconds=3601)
        barrier = threading.Barrier(4)
        counts: list[int] = []

        def sweep() -> None:
            barrier.wait()
            counts.append(tools.escalate_stalled_sends())

        now = mocker.patch("tools.clock.utcnow", return_value=later)
        threads = [threading.Thread(target=sweep) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        mocker.stop(now)

        assert sum(counts) == 3 and len(counts) == 4
        history = tools.get_send_history(wid)["executions"]
        assert sorted(e["status"] for e in history) == ["escalated"] * 3
        with workspace_scope(wid), tools.get_runtime().sessions() as session:
            actions = session.scalars(select(SelfCorrectionAction.execution_id)).all()
        assert sorted(actions) == sorted(e["email_id"] for e in history)  # one record each
    finally:
        tools.shutdown()


def test_a_stopped_worker_finishes_the_send_in_hand_and_leaves_the_rest_due(
    runtime, settings, workspace, smtp_sink
):
    later = (clock.utcnow() + timedelta(hours=1)).isoformat()
    first = send(workspace, "a@example.com", scheduled_for=later)
    second = send(workspace, "b@example.com", scheduled_for=later)
    # Due now, for the worker process too (its clock cannot be moved: the rows' can).
    with runtime.engine.begin() as conn:
        conn.execute(
            update(EmailExecution).values(scheduled_for=clock.utcnow() - timedelta(seconds=1))
        )
    held = HeldData(smtp_sink)  # the first message waits for its answer
    worker = subprocess.Popen(
        [sys.executable, str(REPO / "main.py"), "worker", "--interval", "0.2"],
        env=child_environment(settings, smtp_sink),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert held.arrived.wait(60), "the worker sent nothing"
        worker.send_signal(signal.SIGTERM)
        assert worker.stderr is not None
        wait_for_line(worker.stderr, "stopping after the send in hand")
        held.release()
        assert worker.wait(timeout=60) == 0
    finally:
        held.release()
        if worker.poll() is None:
            worker.kill()
            worker.wait()

    statuses = sorted(tools.get_email_status(r["email_id"])["status"] for r in (first, second))
    assert statuses == ["scheduled", "sent"]  # recorded, not left `sending`; the other waits
    assert len(smtp_sink.messages) == 1
    smtp_sink.recorder.on_data = None
    assert tools.send_due_emails()["sent"] == 1


def test_provider_health_shows_the_open_breaker_and_only_this_workspaces_attempts(
    configure, sendgrid_fake
):
    workspace = configure(breaker_failure_threshold=1)
    other = tools.create_workspace("Globex", "hello@globex.example", "2 Side Road, Shelbyville")
    sendgrid_fake.script.append(SG_503)
    assert send(workspace, "a@example.com")["execution_result"]["provider"] == "resend"
    assert send(other, "b@example.com")["status"] == "sent"  # sendgrid skipped: cooling down

    client = create_app().test_client()
    reply = client.get(
        "/api/email/providers/health", headers={"Authorization": f"Bearer {workspace['api_key']}"}
    )

    assert reply.status_code == 200
    health = {p["provider"]: p for p in reply.get_json()["providers"]}
    assert list(health) == ["sendgrid", "resend", "smtp"]  # the chain's order
    assert health["sendgrid"]["breaker"]["state"] == "open"
    assert health["sendgrid"]["breaker"]["open_until"] is not None
    failing = health["sendgrid"]["recent"]
    assert (failing["attempts"], failing["sent"], failing["success_rate"]) == (1, 0, 0.0)
    assert failing["max_latency_ms"] >= failing["avg_latency_ms"] >= 0
    # The other workspace's send through Resend is not counted here.
    assert (health["resend"]["recent"]["attempts"], health["resend"]["recent"]["sent"]) == (1, 1)
    assert health["resend"]["recent"]["success_rate"] == 1.0
    assert health["smtp"]["breaker"]["state"] == "closed"
    assert health["smtp"]["recent"]["attempts"] == 0
