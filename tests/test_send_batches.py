"""Stored sends in batches: one claim and one record per batch, one SMTP connection, each email
succeeding or failing alone, and a batch that must stop giving back what it never started."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

from sqlalchemy import event, select

import tools
from persistence import EmailExecution
from tests.builders import send
from tools import clock
from tools.send import deliver, send_stored_emails


def _queued(workspace: dict[str, Any], count: int) -> list[str]:
    ids = [
        send(workspace, f"r{i}@example.com", respond_async=True)["email_id"] for i in range(count)
    ]
    assert all(tools.get_email_status(i)["status"] == "queued" for i in ids)
    return ids


def _status(email_id: str) -> tuple[str, str | None]:
    status = tools.get_email_status(email_id)
    return status["status"], status["error_code"]


def test_a_batch_is_claimed_and_recorded_in_two_commits_over_one_smtp_connection(
    workspace, smtp_sink, runtime
):
    ids = _queued(workspace, 5)
    commits = []
    event.listen(runtime.engine, "commit", lambda conn: commits.append(conn))

    became = send_stored_emails(ids)

    assert became == dict.fromkeys(ids, "sent")
    assert len(commits) == 2  # the claim, the record
    assert smtp_sink.recorder.sessions == 1  # the five streamed over one connection
    assert sorted(m.rcpt_tos[0] for m in smtp_sink.messages) == [
        f"r{i}@example.com" for i in range(5)
    ]
    assert send_stored_emails(ids) == dict.fromkeys(ids, "skipped")  # nothing twice


def test_each_email_of_a_batch_succeeds_or_fails_alone(workspace, smtp_sink, runtime, mocker):
    ids = _queued(workspace, 4)
    smtp_sink.recorder.rcpt_replies.append("554 5.7.1 Refused by policy")  # the first's RCPT
    real_compose = deliver.compose

    def compose_with_a_bug(runtime: Any, reserved: Any) -> Any:
        # A bug in one email's delivery (a fault no real input produces here).
        if reserved.execution.id == ids[1]:
            raise RuntimeError("a bug")
        return real_compose(runtime, reserved)

    mocker.patch.object(deliver, "compose", side_effect=compose_with_a_bug)

    became = send_stored_emails(ids)

    assert became == {
        ids[0]: "delivery_failed",  # refused by the server: CX08 rescheduled it
        ids[1]: "delivery_failed",  # crashed: escalated, never resent
        ids[2]: "sent",
        ids[3]: "sent",
    }
    assert _status(ids[0]) == ("scheduled", "all_providers_failed")
    assert _status(ids[1]) == ("escalated", "internal_error")
    assert sorted(m.rcpt_tos[0] for m in smtp_sink.messages) == ["r2@example.com", "r3@example.com"]


class SteppedClock:
    """A monotonic clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_batch_that_runs_late_gives_back_the_sends_it_did_not_start(
    workspace, smtp_sink, settings
):
    monotonic = SteppedClock()
    tools.configure(settings, monotonic=monotonic)
    ids = _queued(workspace, 3)
    budget = settings.stalled_send_seconds - settings.longest_delivery_seconds

    def slow_relay() -> None:  # the first delivery takes all the batch's time
        monotonic.now += budget
        smtp_sink.recorder.on_data = None

    smtp_sink.recorder.on_data = slow_relay

    became = send_stored_emails(ids)

    assert became == {ids[0]: "sent", ids[1]: "deferred", ids[2]: "deferred"}
    assert [_status(i)[0] for i in ids] == ["sent", "queued", "queued"]
    assert tools.send_queued_emails()["sent"] == 2  # the next run sends them
    assert len(smtp_sink.messages) == 3


def test_a_worker_asked_to_stop_gives_back_the_rest_of_its_batch_as_it_was(
    workspace, smtp_sink, runtime, mocker
):
    later = (clock.utcnow() + timedelta(minutes=5)).isoformat()
    scheduled = [
        send(workspace, f"s{i}@example.com", scheduled_for=later)["email_id"] for i in range(3)
    ]
    stop = threading.Event()
    smtp_sink.recorder.on_data = stop.set  # asked to stop during the first delivery
    mocker.patch("tools.clock.utcnow", return_value=clock.utcnow() + timedelta(minutes=10))

    counts = tools.send_due_emails(stop=stop)

    assert (counts["due"], counts["sent"], counts["deferred"]) == (3, 1, 2)
    assert [_status(i)[0] for i in scheduled] == ["sent", "scheduled", "scheduled"]
    with runtime.engine.connect() as conn:  # their slots in the hourly limit given back
        slots = conn.execute(
            select(EmailExecution.reserved_at).where(EmailExecution.id.in_(scheduled[1:]))
        ).scalars()
        assert list(slots) == [None, None]
    smtp_sink.recorder.on_data = None
    again = tools.send_due_emails()
    assert (again["due"], again["sent"]) == (2, 2)
    assert len(smtp_sink.messages) == 3


def test_a_batched_send_makes_one_statement_of_its_own(workspace, smtp_sink, runtime):
    statements: list[str] = []
    event.listen(
        runtime.engine, "before_cursor_execute", lambda *a: statements.append(a[2]), named=False
    )

    def cost(count: int, first: int) -> int:
        ids = [
            send(workspace, f"n{first + i}@example.com", respond_async=True)["email_id"]
            for i in range(count)
        ]
        statements.clear()
        assert set(send_stored_emails(ids).values()) == {"sent"}
        return len(statements)

    # The batch's reads and writes are one statement each whatever its size; each send adds
    # only its conditional claim.
    assert cost(10, 0) - cost(5, 100) == 5


def test_a_batch_blocks_what_came_up_meanwhile_and_sends_the_rest(workspace, smtp_sink, runtime):
    ids = _queued(workspace, 3)
    wid = workspace["workspace_id"]
    tools.suppress(wid, "r0@example.com", "unsubscribed")
    execution = tools.get_email_status(ids[1])["circuit_execution_id"]
    tools.record_circuit_result(wid, execution, "CX03", False)

    became = send_stored_emails(ids)

    assert became == {ids[0]: "blocked", ids[1]: "blocked", ids[2]: "sent"}
    assert _status(ids[0]) == ("blocked", "suppressed")
    assert _status(ids[1]) == ("blocked", "circuit_validation_failed")
    assert [m.rcpt_tos[0] for m in smtp_sink.messages] == ["r2@example.com"]


def test_providers_that_cannot_be_built_leave_the_stored_sends_as_they_were(
    workspace, runtime, tmp_path, mocker
):
    later = (clock.utcnow() + timedelta(minutes=5)).isoformat()
    email_id = send(workspace, "s@example.com", scheduled_for=later)["email_id"]
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    # The development server's outbox cannot be made: the chain fails as it is built.
    tools.configure(runtime.settings.replace(smtp_server=None, outbox_dir=blocker / "outbox"))
    mocker.patch("tools.clock.utcnow", return_value=clock.utcnow() + timedelta(minutes=10))

    try:
        send_stored_emails([email_id])
    except OSError:
        pass
    else:
        raise AssertionError("the chain was built")
    assert _status(email_id) == ("scheduled", None)  # not claimed, not escalated
