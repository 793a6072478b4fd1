"""Seed 001's performance summary: the `email_agent_performance` view, queried as the seed
does on SQLite and PostgreSQL, and its target metrics measured from the audit trail."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import text

import tools
from persistence import workspace_scope
from tests.builders import make_settings, send
from tools import clock


@pytest.fixture(params=["sqlite", "postgresql"])
def any_database(request, smtp_sink, tmp_path):
    url = request.getfixturevalue("postgres_url" if request.param == "postgresql" else "sqlite_url")
    runtime = tools.configure(make_settings(url, smtp_sink, tmp_path))
    yield runtime
    tools.shutdown()


def test_the_view_answers_the_seeds_query(any_database, smtp_sink):
    workspace = tools.create_workspace("Acme", "news@acme.example", "1 Main Street, Town")
    other = tools.create_workspace("Globex", "hi@globex.example", "2 Side Road, Town")
    smtp_sink.recorder.rcpt_replies.append("554 5.7.1 Refused by policy")
    send(workspace, "a@example.com")  # refused (permanent: no retry): tried, not sent
    for n in range(3):
        send(workspace, f"r{n}@example.com")
    send(other, "x@example.com")

    # On PostgreSQL the view is read as the workspace's own transaction, as the service reads it.
    with workspace_scope(workspace["workspace_id"]), any_database.engine.connect() as conn:
        rows = (
            conn.execute(
                text("SELECT * FROM email_agent_performance WHERE workspace_id = :w"),
                {"w": workspace["workspace_id"]},
            )
            .mappings()
            .all()
        )

    assert [dict(r) for r in rows] == [
        {
            "workspace_id": workspace["workspace_id"],
            "provider": "smtp",
            "total_emails": 4,
            "successful_sends": 3,
            "success_rate": pytest.approx(75.0),
        }
    ]
    route = tools.provider_performance(workspace["workspace_id"])["providers"]
    assert route == [
        {"provider": "smtp", "total_emails": 4, "successful_sends": 3, "success_rate": 75.0}
    ]


def test_the_targets_are_measured_from_the_audit_trail(any_database, smtp_sink, mocker):
    workspace = tools.create_workspace("Acme", "news@acme.example", "1 Main Street, Town")
    wid = workspace["workspace_id"]
    smtp_sink.recorder.replies.append("451 4.3.0 try again later")  # one retry for the first
    sent = [send(workspace, f"r{n}@example.com") for n in range(2)]
    token = any_database.tokens.make(wid, "r0@example.com", sent[0]["email_id"])
    later = clock.utcnow() + timedelta(minutes=12)
    mocker.patch("tools.clock.utcnow", return_value=later)
    assert tools.unsubscribe(token)["success"]  # an engagement event, collected 12 min later

    targets = tools.provider_performance(wid)["targets"]

    assert targets["sending_success_rate_percent"] == {
        "value": 100.0,
        "target": "> 95",
        "met": True,
    }
    assert targets["avg_retries_per_email"] == {"value": 0.5, "target": "< 0.5", "met": False}
    assert targets["provider_response_ms"]["value"] > 0
    latency = targets["metrics_collection_latency_minutes"]
    assert latency["value"] == pytest.approx(12.0, abs=0.1)  # over the emails collected
    assert latency["met"] is True
