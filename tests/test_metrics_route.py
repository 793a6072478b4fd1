"""`/metrics`: the Prometheus exposition after real sends, read back with prometheus_client's
own parser; off without a token, closed without the right one."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

import tools
from api import create_app
from tests.builders import send

TOKEN = "metrics-token-for-tests"


@pytest.fixture
def client(settings):
    tools.configure(settings.replace(metrics_token=TOKEN))
    yield create_app().test_client()
    tools.shutdown()


def _samples(client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    reply = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert reply.status_code == 200
    assert reply.headers["Content-Type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(reply.get_data(as_text=True))
        for sample in family.samples
    }


def test_the_metrics_count_what_the_sink_received(client, smtp_sink):
    workspace = tools.create_workspace("Acme", "news@acme.example", "1 Main Street, Town")
    for i in range(3):
        assert send(workspace, f"r{i}@example.com")["status"] == "sent"
    smtp_sink.recorder.rcpt_replies.append("554 5.7.1 Message refused by policy")
    assert send(workspace, "gone@example.com")["status"] == "scheduled"  # CX08 reschedules
    assert send(workspace, "later@example.com", respond_async=True)["status"] == "queued"

    samples = _samples(client)

    received = len(smtp_sink.messages)
    assert received == 3
    assert samples[("email_sends", (("provider", "smtp"), ("status", "sent")))] == received
    assert (
        samples[("email_provider_attempts_total", (("outcome", "sent"), ("provider", "smtp")))]
        == received
    )
    assert (
        samples[
            (
                "email_provider_attempts_total",
                (("outcome", "permanent_error"), ("provider", "smtp")),
            )
        ]
        == 1
    )
    assert samples[("email_rows_waiting", (("status", "queued"),))] == 1
    assert samples[("email_rows_waiting", (("status", "scheduled"),))] == 1
    assert samples[("email_send_duration_seconds_count", ())] == received + 1
    assert samples[("email_send_duration_seconds_bucket", (("le", "+Inf"),))] == received + 1


def test_metrics_are_off_without_a_token_and_closed_without_the_right_one(settings, client):
    assert client.get("/metrics").status_code == 401
    wrong = client.get("/metrics", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.headers["WWW-Authenticate"] == "Bearer"
    tools.configure(settings)  # no EMAIL_METRICS_TOKEN
    off = create_app().test_client().get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert off.status_code == 404
    assert "EMAIL_METRICS_TOKEN" in off.get_json()["error"]["message"]


def test_a_workspace_key_does_not_open_the_metrics(client):
    workspace = tools.create_workspace("Acme", "news@acme.example", "1 Main Street, Town")
    reply = client.get("/metrics", headers={"Authorization": f"Bearer {workspace['api_key']}"})
    assert reply.status_code == 401
