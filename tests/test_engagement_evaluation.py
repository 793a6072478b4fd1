"""CX07: one sent email's engagement evaluated against its workspace's recent rates, logged as
its CX07 circuit result, on request or at each collect-metrics when switched on."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, update

import tools
from persistence import CircuitExecutionLog, EmailMetrics
from tests.builders import send
from tools import clock


def _engaged(email_id: str, **flags: bool) -> None:
    """What folded provider events leave on an email's metrics row (the arrangement only)."""
    values = {**flags, **{f"{name}_at": clock.utcnow() for name in flags}}
    with tools.get_runtime().engine.begin() as conn:
        conn.execute(
            update(EmailMetrics)
            .where(EmailMetrics.execution_id == email_id)
            .values(**values, collected_at=clock.utcnow())
        )


def _cx07_logs(workspace_id: str) -> list[tuple[bool, str]]:
    with tools.get_runtime().read_sessions() as session:
        rows = session.scalars(
            select(CircuitExecutionLog)
            .where(
                CircuitExecutionLog.workspace_id == workspace_id,
                CircuitExecutionLog.circuit_id == "CX07_ENGAGEMENT_EVALUATION",
            )
            .order_by(CircuitExecutionLog.created_at)
        ).all()
    return [(row.success, row.output["verdict"]) for row in rows]


def test_no_engagement_is_pending_then_no_response(workspace, smtp_sink, mocker):
    wid = workspace["workspace_id"]
    sent = send(workspace)

    first = tools.evaluate_engagement(wid, sent["email_id"])
    mocker.patch("tools.clock.utcnow", return_value=clock.utcnow() + timedelta(days=3))
    later = tools.evaluate_engagement(wid, sent["email_id"])

    assert first["verdict"] == "pending" and later["verdict"] == "no_response"
    assert _cx07_logs(wid) == [(True, "pending"), (True, "no_response")]
    assert tools.validate_circuits(wid, sent["circuit_execution_id"])["all_required_passed"]


def test_an_open_is_judged_against_the_workspaces_rate(workspace, smtp_sink):
    wid = workspace["workspace_id"]
    emails = [send(workspace, f"r{n}@example.com")["email_id"] for n in range(4)]
    _engaged(emails[0], opened=True)

    rare = tools.evaluate_engagement(wid, emails[0])
    for email_id in emails[1:]:
        _engaged(email_id, opened=True)
    common = tools.evaluate_engagement(wid, emails[0])

    assert rare["verdict"] == "above_baseline"
    assert rare["baseline"]["sends"] == 3 and rare["baseline"]["opened_rate"] == 0.0
    assert common["verdict"] == "engaged" and common["baseline"]["opened_rate"] == 1.0


def test_a_complaint_or_unsubscribe_is_negative_and_fails_cx07(workspace, smtp_sink):
    wid = workspace["workspace_id"]
    sent = send(workspace)
    _engaged(sent["email_id"], opened=True, complained=True)

    result = tools.evaluate_engagement(wid, sent["email_id"])

    assert result["verdict"] == "negative" and result["signals"]["complained"] is True
    assert _cx07_logs(wid) == [(False, "negative")]
    circuits = tools.get_execution_detail(wid, sent["email_id"])["circuits"]
    assert "CX07_ENGAGEMENT_EVALUATION" in [c["circuit_id"] for c in circuits]


def test_only_a_sent_email_of_the_workspace_is_evaluated(workspace, other_workspace, smtp_sink):
    wid = workspace["workspace_id"]
    sent = send(workspace)
    tools.suppress(wid, "gone@example.com", "unsubscribed")

    stranger = tools.evaluate_engagement(other_workspace["workspace_id"], sent["email_id"])
    queued = send(workspace, "later@example.com", respond_async=True)
    unsent = tools.evaluate_engagement(wid, queued["email_id"])

    assert stranger["error"]["code"] == "not_found"
    assert unsent["error"]["code"] == "invalid_input"
    assert _cx07_logs(wid) == []


def test_collect_metrics_evaluates_what_changed_when_switched_on(settings, workspace, smtp_sink):
    tools.configure(settings.replace(cx07_on_collect=True))
    wid = workspace["workspace_id"]
    emails = [send(workspace, f"r{n}@example.com")["email_id"] for n in range(3)]
    _engaged(emails[1], clicked=True)

    first = tools.collect_metrics(wid)
    second = tools.collect_metrics(wid)

    assert first["cx07_evaluated"] == 1 and second["cx07_evaluated"] == 0
    assert _cx07_logs(wid) == [(True, "above_baseline")]


def test_the_metrics_route_evaluates_one_email(api, workspace, smtp_sink):
    sent = send(workspace)
    path = "/api/circuits/agents/email/metrics"

    done = api.post(
        path,
        key=workspace["api_key"],
        params={"action": "evaluate-engagement", "emailId": sent["email_id"]},
    )
    missing = api.post(path, key=workspace["api_key"], params={"action": "evaluate-engagement"})

    assert done.status_code == 200 and done.json()["verdict"] == "pending"
    assert missing.status_code == 400 and missing.json()["error"]["code"] == "missing_field"
