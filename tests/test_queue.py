"""Past one machine: sends on Celery over Redis, PostgreSQL as the record, real worker processes.

A private redis-server per test (`tests/redis_server.py`) is the broker, so a test can stop it;
`main.py worker` and `main.py beat` run as child processes, as an operator runs them.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

import tools
from tests.builders import ASSET, approve, make_settings
from tests.processes import child_environment
from tests.redis_server import PrivateRedis
from tests.smtp_sink import HeldData
from tools import clock, queue

REPO = Path(__file__).resolve().parent.parent
CLIENT = "550e8400-e29b-41d4-a716-446655440000"
ASYNC = {"Prefer": "respond-async"}


@pytest.fixture
def broker() -> Iterator[PrivateRedis]:
    server = PrivateRedis().start()
    yield server
    server.stop()


@pytest.fixture
def service(postgres_url, smtp_sink, broker, tmp_path):
    """The tools on PostgreSQL with the broker; (settings, workspace)."""
    settings = make_settings(
        postgres_url, smtp_sink, tmp_path, celery_broker_url=broker.url, rate_limit_per_hour=10_000
    )
    tools.configure(settings)
    workspace = tools.create_workspace("Acme", "news@acme.example", "1 Main Street, Springfield")
    yield settings, workspace
    tools.shutdown()


def _environment(settings, sink, broker) -> dict[str, str]:
    env = child_environment(settings, sink)
    env.update(CELERY_BROKER_URL=broker.url, EMAIL_DISPATCH_INTERVAL_SECONDS="0.2")
    return env


@contextlib.contextmanager
def _running(command: list[str], env: dict[str, str], log: Path, ready: str) -> Iterator[Any]:
    """`main.py <command>` as a child process (its log in `log`), once it says `ready`."""
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, str(REPO / "main.py"), *command],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its pool processes go with it when it is killed
        )
    try:
        deadline = time.monotonic() + 60
        while ready not in log.read_text():
            assert process.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, f"not ready: {log.read_text()[-3000:]}"
            time.sleep(0.05)
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)  # a warm shutdown: the task in hand finishes
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def _worker(settings, sink, broker, log: Path, concurrency: int = 2):
    command = ["worker", "--concurrency", str(concurrency)]
    return _running(command, _environment(settings, sink, broker), log, "ready.")


def _beat(settings, sink, broker, tmp_path: Path):
    command = ["beat", "--schedule", str(tmp_path / "beat-schedule")]
    return _running(command, _environment(settings, sink, broker), tmp_path / "beat.log", "beat")


def _dispatches(tmp_path: Path) -> int:
    """How many dispatcher runs beat has started."""
    return (tmp_path / "beat.log").read_text().count("Sending due task dispatch")


def _accept(workspace, count: int) -> list[dict]:
    """`count` async sends, each of its own approved execution: all queued."""
    wid = workspace["workspace_id"]
    results = []
    for i in range(count):
        execution_id = approve(wid)
        results.append(
            tools.send_email(
                wid, CLIENT, execution_id, f"r{i}@example.com", ASSET, respond_async=True
            )
        )
    assert Counter(r["status"] for r in results) == {"queued": count}, results[0]
    return results


def _statuses(results: list[dict]) -> Counter:
    return Counter(tools.get_email_status(r["email_id"])["status"] for r in results)


def _wait(condition, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_two_workers_send_each_of_many_queued_emails_exactly_once(
    service, smtp_sink, broker, tmp_path
):
    settings, workspace = service
    accepted = _accept(workspace, 500)
    # Every task a second time, as a redelivery or a dispatcher racing the request would.
    ids = [r["email_id"] for r in accepted]
    tools.get_runtime().queue.publish_sends(ids, settings.send_batch_size)

    with (
        _worker(settings, smtp_sink, broker, tmp_path / "w1.log"),
        _worker(settings, smtp_sink, broker, tmp_path / "w2.log"),
    ):
        _wait(lambda: broker.queued_messages() == 0, "the queue never drained")
        _wait(lambda: len(smtp_sink.messages) >= 500, "not every email arrived")

    assert _statuses(accepted) == {"sent": 500}
    received = Counter(m.rcpt_tos[0] for m in smtp_sink.messages)
    assert len(received) == 500 and set(received.values()) == {1}  # each once
    both = [(tmp_path / f"w{i}.log").read_text().count("succeeded") for i in (1, 2)]
    assert all(both), both  # both workers took their share


def test_a_send_accepted_while_the_broker_is_down_is_published_later_and_sent_once(
    service, smtp_sink, broker, tmp_path
):
    settings, workspace = service
    broker.stop()
    [accepted] = _accept(workspace, 1)  # nothing waits on the broker

    broker.start()
    with (
        _worker(settings, smtp_sink, broker, tmp_path / "w.log"),
        _beat(settings, smtp_sink, broker, tmp_path),
    ):
        _wait(lambda: len(smtp_sink.messages) == 1, "the dispatcher never published it")
        _wait(lambda: broker.queued_messages() == 0, "the queue never drained")
        ticks = _dispatches(tmp_path)
        _wait(lambda: _dispatches(tmp_path) >= ticks + 3, "beat stopped dispatching")
        _wait(lambda: broker.queued_messages() == 0, "a dispatch published it again")
    assert _statuses([accepted]) == {"sent": 1}
    assert len(smtp_sink.messages) == 1


def test_a_worker_killed_mid_batch_loses_nothing_and_sends_nothing_twice(
    service, smtp_sink, broker, tmp_path, mocker
):
    settings, workspace = service
    broker.stop()
    accepted = _accept(workspace, 20)  # published by the dispatcher: four batches of five
    broker.start()
    tools.configure(settings.replace(send_batch_size=5))
    assert queue.dispatch(tools.get_runtime()) == 20
    env = {**_environment(settings, smtp_sink, broker), "EMAIL_SEND_BATCH_SIZE": "5"}
    held = HeldData(smtp_sink)
    try:
        with _running(["worker", "--concurrency", "1"], env, tmp_path / "w1.log", "ready.") as w:
            assert held.arrived.wait(60), "the worker sent nothing"
            os.killpg(w.pid, signal.SIGKILL)  # the worker and its pool, mid-batch
            w.wait()
    finally:
        held.release()
    smtp_sink.recorder.on_data = None
    with _running(["worker", "--concurrency", "1"], env, tmp_path / "w2.log", "ready."):
        # The tasks the dead worker had taken wait, unacknowledged, for the broker's visibility
        # timeout; the dispatcher publishes their rows again once it has passed.
        later = clock.utcnow() + timedelta(seconds=settings.broker_visibility_seconds + 1)
        mocker.patch("tools.clock.utcnow", return_value=later)
        queue.dispatch(tools.get_runtime())
        _wait(lambda: _statuses(accepted)["sent"] == 15, "the other batches were not sent")
    # The batch in hand: one held at DATA (maybe delivered), four never started; none resent.
    assert tools.escalate_stalled_sends() == 5

    assert _statuses(accepted) == {"sent": 15, "escalated": 5}
    escalated = [r for r in accepted if _statuses([r])["escalated"]]
    assert {tools.get_email_status(r["email_id"])["error_code"] for r in escalated} == {
        "delivery_unconfirmed"
    }
    received = Counter(m.rcpt_tos[0] for m in smtp_sink.messages)
    assert len(received) == 16 and set(received.values()) == {1}  # the held one arrived once


def test_the_hourly_limit_holds_for_concurrent_async_sends_through_two_api_processes(
    service, smtp_sink, broker, tmp_path
):
    settings, _ = service
    limited = tools.create_workspace(
        "Limited", "news@limited.example", "1 Limit Lane", rate_limit_per_hour=20
    )
    asset = {"subject": "Plain hello", "html_body": "<p>Hello there</p>"}
    executions = [approve(limited["workspace_id"], asset=asset) for _ in range(32)]
    env = _environment(settings, smtp_sink, broker)
    serve = ["serve", "--port", "0"]
    with (
        _running(serve, env, tmp_path / "api1.log", "http://127.0.0.1:") as first,
        _running(serve, env, tmp_path / "api2.log", "http://127.0.0.1:") as second,
    ):
        bases = [_served_at(tmp_path / f"api{i}.log") for i in (1, 2)]

        def post(i: int) -> int:
            body = {
                "to": f"c{i}@example.com",
                "circuit_execution_id": executions[i],
                "client_id": CLIENT,
                **{"subject": asset["subject"], "body": asset["html_body"]},
            }
            answer = httpx.post(
                f"{bases[i % 2]}/api/email/send",
                json=body,
                headers={"Authorization": f"Bearer {limited['api_key']}", **ASYNC},
                timeout=60,
            )
            return answer.status_code

        with ThreadPoolExecutor(32) as pool:
            answers = Counter(pool.map(post, range(32)))
        assert first.poll() is None and second.poll() is None
    assert answers == {202: 20, 403: 12}

    with _worker(settings, smtp_sink, broker, tmp_path / "w.log"):
        _wait(lambda: len(smtp_sink.messages) >= 20, "the accepted sends were not delivered")
        _wait(lambda: broker.queued_messages() == 0, "the queue never drained")
    assert len(smtp_sink.messages) == 20


def _served_at(log: Path) -> str:
    found = re.search(r"http://127\.0\.0\.1:\d+", log.read_text())
    assert found is not None, log.read_text()
    return found.group(0)


@pytest.fixture
def rabbitmq_url() -> Iterator[str]:
    """A virtual host of its own on the machine's RabbitMQ, deleted afterwards: the server is
    shared, and a worker on its default vhost could take another run's tasks."""
    vhost = f"email_test_{os.urandom(6).hex()}"
    try:
        socket.create_connection(("127.0.0.1", 5672), timeout=2).close()
        _rabbitmqctl("add_vhost", vhost)
    except (OSError, subprocess.CalledProcessError) as error:
        pytest.skip(f"RabbitMQ on 127.0.0.1:5672 with rabbitmqctl is needed: {error}")
    try:
        _rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        yield f"amqp://guest:guest@127.0.0.1:5672/{vhost}"
    finally:
        _rabbitmqctl("delete_vhost", vhost)


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=60)


def test_rabbitmq_carries_the_sends_as_redis_does(postgres_url, smtp_sink, rabbitmq_url, tmp_path):
    settings = make_settings(postgres_url, smtp_sink, tmp_path, celery_broker_url=rabbitmq_url)
    tools.configure(settings)
    try:
        workspace = tools.create_workspace("Acme", "news@acme.example", "1 Main Street, Town")
        accepted = _accept(workspace, 3)  # each published to RabbitMQ as it is accepted
        env = {**child_environment(settings, smtp_sink), "CELERY_BROKER_URL": rabbitmq_url}
        with _running(["worker", "--concurrency", "1"], env, tmp_path / "w.log", "ready."):
            _wait(lambda: _statuses(accepted)["sent"] == 3, "the sends were not delivered")
        assert sorted(m.rcpt_tos[0] for m in smtp_sink.messages) == [
            f"r{i}@example.com" for i in range(3)
        ]
    finally:
        tools.shutdown()
