"""Hourly limit, per-recipient throttle and idempotency, also under concurrent callers.

The database enforces all three (SQLite's write lock, PostgreSQL's workspace row lock), so
threads of one process and separate processes on one PostgreSQL database see one count.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import tools
from persistence import sqlite_database_path
from tests.builders import ASSET, approve, make_settings, send
from tools import clock
from tools.send import due

REPO = Path(__file__).resolve().parent.parent
CLIENT = "550e8400-e29b-41d4-a716-446655440000"


def _limited_workspace(limit: int) -> dict:
    result = tools.create_workspace(
        "Limited", "news@limited.example", "1 Limit Lane, Capville", rate_limit_per_hour=limit
    )
    assert result["success"], result
    return result


def test_hourly_limit_blocks_the_next_send_and_frees_up_as_the_window_slides(
    runtime, smtp_sink, mocker
):
    workspace = _limited_workspace(2)
    start = clock.utcnow()
    assert send(workspace, "a@example.com")["status"] == "sent"
    now = mocker.patch("tools.clock.utcnow", return_value=start + timedelta(minutes=30))
    assert send(workspace, "b@example.com")["status"] == "sent"
    blocked = send(workspace, "c@example.com")
    assert blocked["error"]["code"] == "rate_limit_exceeded"
    assert blocked["status"] == "blocked"
    now.return_value = start + timedelta(minutes=61)
    assert send(workspace, "c@example.com")["status"] == "sent"  # the first left the window
    assert send(workspace, "d@example.com")["error"]["code"] == "rate_limit_exceeded"
    mocker.stop(now)
    assert len(smtp_sink.messages) == 3


def test_default_limit_comes_from_settings(smtp_sink, sqlite_url, tmp_path):
    tools.configure(make_settings(sqlite_url, smtp_sink, tmp_path, rate_limit_per_hour=1))
    try:
        workspace = tools.create_workspace("W", "w@w.example", "1 Road, Town")
        assert workspace["rate_limit_per_hour"] == 1
        assert send(workspace, "a@example.com")["status"] == "sent"
        assert send(workspace, "b@example.com")["error"]["code"] == "rate_limit_exceeded"
    finally:
        tools.shutdown()


def test_same_recipient_within_a_minute_is_throttled(workspace, smtp_sink, runtime, mocker):
    start = clock.utcnow()
    assert send(workspace, "bob@example.com")["status"] == "sent"
    throttled = send(workspace, "BOB@example.com")  # another execution, same person
    assert throttled["error"]["code"] == "recipient_throttled"
    now = mocker.patch("tools.clock.utcnow", return_value=start + timedelta(seconds=59))
    assert send(workspace, "bob@example.com")["error"]["code"] == "recipient_throttled"
    now.return_value = start + timedelta(seconds=61)
    assert send(workspace, "bob@example.com")["status"] == "sent"
    mocker.stop(now)
    assert len(smtp_sink.messages) == 2


def test_other_workspaces_have_their_own_limits(runtime, smtp_sink):
    first, second = _limited_workspace(1), _limited_workspace(1)
    assert send(first, "a@example.com")["status"] == "sent"
    assert send(second, "a@example.com")["status"] == "sent"  # neither limit nor throttle shared


def _call(workspace_id: str, execution_id: str, recipient: str) -> dict:
    """Keyword arguments of one send_email call of ASSET."""
    return dict(
        workspace_id=workspace_id,
        client_id=CLIENT,
        circuit_execution_id=execution_id,
        recipient=recipient,
        final_asset=ASSET,
    )


def _concurrent(calls: list[dict], workers: int = 8) -> list[dict]:
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(lambda kw: tools.send_email(**kw), calls))


def _run_thread_races(smtp_sink) -> None:
    # Limit: 20 different recipients race for 5 slots.
    workspace = _limited_workspace(5)
    wid = workspace["workspace_id"]
    execution_id = approve(wid)
    calls = [_call(wid, execution_id, f"user{i}@example.com") for i in range(20)]
    outcomes = Counter(r.get("error", {}).get("code", r["status"]) for r in _concurrent(calls))
    assert outcomes == {"sent": 5, "rate_limit_exceeded": 15}
    assert len(smtp_sink.messages) == 5

    # Idempotency: the same request 12 times at once is sent once.
    workspace = _limited_workspace(100)
    wid = workspace["workspace_id"]
    execution_id = approve(wid)
    same = _call(wid, execution_id, "once@example.com")
    results = _concurrent([same] * 12)
    outcomes = Counter(r.get("error", {}).get("code", r["status"]) for r in results)
    assert outcomes == {"sent": 1, "duplicate_send": 11}
    assert len({r["email_id"] for r in results}) == 1

    # Throttle: 10 executions to one recipient at once: one gets through.
    calls = [_call(wid, approve(wid), "busy@example.com") for _ in range(10)]
    outcomes = Counter(r.get("error", {}).get("code", r["status"]) for r in _concurrent(calls))
    assert outcomes == {"sent": 1, "recipient_throttled": 9}
    assert len(smtp_sink.messages) == 7


def test_limits_hold_under_concurrent_threads_on_sqlite(runtime, smtp_sink):
    _run_thread_races(smtp_sink)


def test_limits_hold_under_concurrent_threads_on_postgresql(postgres_url, smtp_sink, tmp_path):
    tools.configure(make_settings(postgres_url, smtp_sink, tmp_path))
    try:
        _run_thread_races(smtp_sink)
    finally:
        tools.shutdown()


_WORKER = textwrap.dedent(
    """
    import json, sys, time
    import tools
    from settings import load_settings
    from tests.builders import SIGNING_SECRET
    spec = json.loads(sys.argv[1])
    tools.configure(load_settings({}).replace(
        database_url=spec["url"], smtp_server="127.0.0.1",
        smtp_port=spec["port"], smtp_use_tls=False, retry_initial_delay=0.01,
        signing_secret=SIGNING_SECRET))
    while time.time() < spec["start_at"]:
        time.sleep(0.001)
    out = [tools.send_email(**call) for call in spec["calls"]]
    tools.shutdown()
    print(json.dumps([r.get("error", {}).get("code", r["status"]) for r in out]))
    """
)


def _race_in_processes(url: str, port: int, per_process: list[list[dict]]) -> Counter:
    import time

    start_at = time.time() + 3.0  # every process is up and configured by then
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                _WORKER,
                json.dumps({"url": url, "port": port, "start_at": start_at, "calls": calls}),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd=REPO,
        )
        for calls in per_process
    ]
    outcomes: Counter = Counter()
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()[-2000:]
        outcomes.update(json.loads(out.decode().strip().splitlines()[-1]))
    return outcomes


def test_limits_hold_across_processes_on_postgresql(postgres_url, smtp_sink, tmp_path):
    tools.configure(make_settings(postgres_url, smtp_sink, tmp_path))
    try:
        limited = _limited_workspace(6)
        wid = limited["workspace_id"]
        execution_id = approve(wid)
        per_process = [
            [_call(wid, execution_id, f"p{p}u{i}@example.com") for i in range(5)] for p in range(4)
        ]
        outcomes = _race_in_processes(postgres_url, smtp_sink.port, per_process)
        assert outcomes == {"sent": 6, "rate_limit_exceeded": 14}
        assert len(smtp_sink.messages) == 6

        execution_id = approve(wid := _limited_workspace(50)["workspace_id"])
        same = _call(wid, execution_id, "once@example.com")
        outcomes = _race_in_processes(postgres_url, smtp_sink.port, [[same] * 3] * 4)
        assert outcomes == {"sent": 1, "duplicate_send": 11}
        assert len(smtp_sink.messages) == 7
    finally:
        tools.shutdown()


def test_scheduled_send_waits_then_goes_through_the_checks_again(workspace, smtp_sink, mocker):
    count = 3
    wid = workspace["workspace_id"]
    later = (clock.utcnow() + timedelta(hours=2)).isoformat()
    results = [send(workspace, f"s{i}@example.com", scheduled_for=later) for i in range(count)]
    assert [r["status"] for r in results] == ["scheduled"] * count
    assert "error" not in results[0]
    assert tools.send_due_emails()["due"] == 0
    assert smtp_sink.messages == []

    tools.suppress(wid, "s1@example.com", "unsubscribed")  # appears while s1 waits
    now = mocker.patch("tools.clock.utcnow", return_value=clock.utcnow() + timedelta(hours=3))
    counts = tools.send_due_emails()
    mocker.stop(now)
    assert counts["due"] == 3 and counts["sent"] == 2 and counts["blocked"] == 1
    assert sorted(m.rcpt_tos[0] for m in smtp_sink.messages) == ["s0@example.com", "s2@example.com"]
    assert tools.get_email_status(results[1]["email_id"])["status"] == "blocked"
    assert tools.get_email_status(results[0]["email_id"])["status"] == "sent"
    assert tools.send_due_emails()["due"] == 0  # nothing is sent twice


def test_a_due_email_another_worker_claimed_first_is_skipped_and_holds_no_lock(
    workspace, smtp_sink, runtime, mocker
):
    scheduled = send(workspace, scheduled_for=(clock.utcnow() + timedelta(hours=1)).isoformat())
    path = sqlite_database_path(runtime.settings.database_url)
    read_rows = due._waiting

    def read_then_lose_the_race(runtime: Any, email_ids: list[str]) -> Any:
        # Another worker claims the email between this worker's read and its claim (a race
        # no single process can time, hence the patch around the real read).
        rows = read_rows(runtime, email_ids)
        with contextlib.closing(sqlite3.connect(path)) as other_worker:
            other_worker.execute(
                "UPDATE email_agent_executions SET status = 'sending' WHERE id = ?",
                (scheduled["email_id"],),
            )
            other_worker.commit()
        return rows

    mocker.patch("tools.clock.utcnow", return_value=clock.utcnow() + timedelta(hours=2))
    mocker.patch.object(due, "_waiting", side_effect=read_then_lose_the_race)
    counts = tools.send_due_emails()

    assert counts["skipped"] == 1 and counts["sent"] == 0
    assert runtime.engine.pool.checkedout() == 0  # the lost claim's transaction is gone
    assert smtp_sink.messages == []
    assert tools.get_email_status(scheduled["email_id"])["status"] == "sending"


def test_scheduled_send_in_the_past_is_sent_now(workspace, smtp_sink):
    earlier = (clock.utcnow() - timedelta(minutes=5)).isoformat()
    assert send(workspace, scheduled_for=earlier)["status"] == "sent"


def test_every_recipient_counts_toward_the_hourly_limit(runtime, smtp_sink):
    workspace = _limited_workspace(3)
    blocked = send(
        workspace, "a@example.com", cc=["b@example.com"], bcc=["c@example.com", "d@x.org"]
    )
    assert blocked["error"]["code"] == "rate_limit_exceeded"
    assert send(workspace, "a@example.com", cc=["b@example.com"])["status"] == "sent"
    assert send(workspace, "c@example.com")["status"] == "sent"
    assert send(workspace, "d@example.com")["error"]["code"] == "rate_limit_exceeded"
    assert len(smtp_sink.messages) == 2


def test_due_send_waits_while_the_limit_is_full_then_goes(runtime, smtp_sink, mocker):
    workspace = _limited_workspace(1)
    start = clock.utcnow()
    scheduled = send(
        workspace, "later@example.com", scheduled_for=(start + timedelta(minutes=5)).isoformat()
    )
    assert send(workspace, "now@example.com")["status"] == "sent"  # uses the hour's one slot
    now = mocker.patch("tools.clock.utcnow", return_value=start + timedelta(minutes=10))
    assert tools.send_due_emails()["deferred"] == 1
    mocker.stop(now)
    assert tools.get_email_status(scheduled["email_id"])["status"] == "scheduled"
    now = mocker.patch("tools.clock.utcnow", return_value=start + timedelta(minutes=61))
    assert tools.send_due_emails()["sent"] == 1
    mocker.stop(now)
    assert tools.get_email_status(scheduled["email_id"])["status"] == "sent"
    assert len(smtp_sink.messages) == 2


def test_due_send_is_blocked_when_a_circuit_failed_meanwhile(workspace, smtp_sink, mocker):
    wid = workspace["workspace_id"]
    execution_id = approve(wid)
    later = (clock.utcnow() + timedelta(hours=1)).isoformat()
    scheduled = send(workspace, circuit_execution_id=execution_id, scheduled_for=later)
    tools.record_circuit_result(wid, execution_id, "CX05", False)
    now = mocker.patch("tools.clock.utcnow", return_value=clock.utcnow() + timedelta(hours=2))
    assert tools.send_due_emails()["blocked"] == 1
    mocker.stop(now)
    status = tools.get_email_status(scheduled["email_id"])
    assert status["status"] == "blocked" and status["error_code"] == "circuit_validation_failed"
    assert smtp_sink.messages == []


def test_a_due_send_that_no_longer_fits_the_rules_is_blocked_and_the_rest_go(
    workspace, smtp_sink, runtime, mocker
):
    later = (clock.utcnow() + timedelta(hours=1)).isoformat()
    broken = send(workspace, "a@example.com", scheduled_for=later)
    fine = send(workspace, "b@example.com", scheduled_for=later)
    with runtime.engine.begin() as conn:  # written by an older version, say
        conn.exec_driver_sql(
            "UPDATE email_agent_executions SET subject = 'two\nlines' WHERE id = ?",
            (broken["email_id"],),
        )
    mocker.patch("tools.clock.utcnow", return_value=clock.utcnow() + timedelta(hours=2))

    counts = tools.send_due_emails()

    assert (counts["blocked"], counts["sent"]) == (1, 1)
    status = tools.get_email_status(broken["email_id"])
    assert (status["status"], status["error_code"]) == ("blocked", "header_injection")
    assert tools.get_email_status(fine["email_id"])["status"] == "sent"


def test_an_async_send_is_checked_and_counted_at_once_and_sent_by_the_worker(runtime, smtp_sink):
    workspace = _limited_workspace(2)
    queued = send(workspace, "a@example.com", respond_async=True)
    assert (queued["status"], queued.get("error")) == ("queued", None)
    assert smtp_sink.messages == []
    assert send(workspace, "b@example.com", respond_async=True)["status"] == "queued"
    over = send(workspace, "c@example.com", respond_async=True)
    assert over["error"]["code"] == "rate_limit_exceeded"  # refused at accept, not later
    assert send(workspace, "a@example.com", respond_async=True)["error"]["code"] == (
        "recipient_throttled"
    )

    counts = tools.send_queued_emails()

    assert (counts["due"], counts["sent"]) == (2, 1 + 1)
    assert sorted(m.rcpt_tos[0] for m in smtp_sink.messages) == ["a@example.com", "b@example.com"]
    assert tools.get_email_status(queued["email_id"])["status"] == "sent"
    assert tools.send_queued_emails()["due"] == 0  # nothing is sent twice


def test_a_queued_send_is_blocked_by_a_suppression_that_came_meanwhile(
    workspace, smtp_sink, runtime
):
    queued = send(workspace, "a@example.com", respond_async=True)
    tools.suppress(workspace["workspace_id"], "a@example.com", "unsubscribed")

    assert tools.send_queued_emails()["blocked"] == 1
    status = tools.get_email_status(queued["email_id"])
    assert (status["status"], status["error_code"]) == ("blocked", "suppressed")
    assert smtp_sink.messages == []


def test_a_queued_send_claimed_twice_is_sent_once(workspace, smtp_sink, runtime):
    queued = send(workspace, respond_async=True)
    email_id = queued["email_id"]
    outcomes = [tools.send.send_stored_emails([email_id])[email_id] for _ in range(2)]
    assert outcomes == ["sent", "skipped"]
    assert len(smtp_sink.messages) == 1
