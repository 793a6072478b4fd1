"""CX05's brand guard: complaint and unsubscribe rates over the window, signals when they cross
their thresholds, and a hard complaint rate pausing the workspace's sends (or only signalling,
with the guard off). The webhook path is in tests/test_api_webhooks.py."""

from __future__ import annotations

import pytest
from sqlalchemy import update

import tools
from persistence import EmailMetrics
from tests.builders import send
from tools import clock


@pytest.fixture
def guarded(settings, workspace):
    """Judged from 10 sends (after the `runtime` fixture configured the defaults)."""
    return tools.configure(settings.replace(reputation_min_sends=10))


def _engaged(email_ids: list[str], **flags: bool) -> None:
    """What folded provider events leave on the metrics rows (the arrangement only)."""
    values = {**flags, **{f"{name}_at": clock.utcnow() for name in flags}}
    with tools.get_runtime().engine.begin() as conn:
        conn.execute(
            update(EmailMetrics).where(EmailMetrics.execution_id.in_(email_ids)).values(**values)
        )


def _sends(workspace, count: int) -> list[str]:
    return [send(workspace, f"r{n}@example.com")["email_id"] for n in range(count)]


def test_rates_under_the_minimum_volume_are_not_judged(guarded, workspace, smtp_sink):
    emails = _sends(workspace, 3)
    _engaged(emails[:1], complained=True)

    state = tools.check_reputation(workspace["workspace_id"])

    assert state["complaint_rate"] == pytest.approx(1 / 3) and state["judged"] is False
    assert state["signals"] == [] and state["sending_paused"] is False


def test_a_warning_rate_is_a_signal_and_sending_goes_on(guarded, settings, workspace, smtp_sink):
    tools.configure(settings.replace(reputation_min_sends=10, complaint_rate_hard=0.2))
    emails = _sends(workspace, 10)
    _engaged(emails[:1], complained=True)
    _engaged(emails[1:3], unsubscribed=True)

    state = tools.check_reputation(workspace["workspace_id"])
    repeat = tools.check_reputation(workspace["workspace_id"])
    after = send(workspace, "next@example.com")

    assert [(s["kind"], s["level"]) for s in state["signals"]] == [
        ("complaint_rate", "warn"),
        ("unsubscribe_rate", "warn"),
    ]
    assert len(repeat["signals"]) == 2  # recorded once while open
    assert state["sending_paused"] is False and after["status"] == "sent"


def test_over_the_hard_rate_sends_pause_and_stored_ones_wait(guarded, workspace, smtp_sink):
    emails = _sends(workspace, 10)
    queued = send(workspace, "queued@example.com", respond_async=True)
    _engaged(emails[:1], complained=True)

    state = tools.check_reputation(workspace["workspace_id"])
    refused = send(workspace, "new@example.com")
    waiting = tools.send_queued_emails()

    assert state["sending_paused"] is True
    assert refused["error"]["code"] == "complaint_rate_exceeded"
    assert "complaint_rate_exceeded" in refused["error"]["message"]
    assert waiting["deferred"] == 1
    assert tools.get_email_status(queued["email_id"])["status"] == "queued"
    assert tools.lift_sending_pause(workspace["workspace_id"], "cleaned")["lifted_signals"] == 2
    assert tools.send_queued_emails()["sent"] == 1


def test_with_the_guard_off_a_hard_rate_only_signals(settings, workspace, smtp_sink):
    tools.configure(settings.replace(reputation_min_sends=10, complaint_guard=False))
    emails = _sends(workspace, 10)
    _engaged(emails[:2], complained=True)

    state = tools.check_reputation(workspace["workspace_id"])

    assert ("complaint_rate", "hard") in {(s["kind"], s["level"]) for s in state["signals"]}
    assert state["sending_paused"] is False
    assert send(workspace, "next@example.com")["status"] == "sent"


def test_another_workspace_is_neither_counted_nor_paused(
    guarded, workspace, other_workspace, smtp_sink
):
    emails = _sends(workspace, 10)
    _engaged(emails[:5], complained=True)
    tools.check_reputation(workspace["workspace_id"])

    other = tools.check_reputation(other_workspace["workspace_id"])

    assert other["sends"] == 0 and other["signals"] == [] and other["sending_paused"] is False
    assert send(other_workspace, "x@example.com")["status"] == "sent"
