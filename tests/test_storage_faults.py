"""A database that cannot be reached: every tool answers with a result, nothing is sent twice.

PostgreSQL behind a proxy the test cuts (`tests/tcp_proxy.py`): the server stays up for every
other test, only this service loses it.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

import tools
from api import create_app
from persistence import make_engine
from tests.builders import approve, make_settings, send
from tests.tcp_proxy import CuttableProxy
from tools import clock


@pytest.fixture
def proxy(postgres_url):
    url = make_url(postgres_url)
    link = CuttableProxy(url.host or "127.0.0.1", url.port or 5432)
    yield link, url.set(host="127.0.0.1", port=link.port).render_as_string(hide_password=False)
    link.close()


@pytest.fixture
def service(proxy, smtp_sink, tmp_path):
    """The tools on PostgreSQL through the proxy; (proxy, workspace, approved execution)."""
    link, url = proxy
    tools.configure(make_settings(url, smtp_sink, tmp_path))
    workspace = tools.create_workspace("Acme", "news@acme.example", "1 Main Street, Springfield")
    yield link, workspace, approve(workspace["workspace_id"])
    link.restore()
    tools.shutdown()


def test_a_send_while_the_database_is_away_sends_nothing_and_says_so(service, smtp_sink):
    link, workspace, execution_id = service
    link.cut()

    result = send(workspace, circuit_execution_id=execution_id)

    assert result["status"] == "blocked" and result["email_id"] is None
    assert result["error"]["code"] == "storage_unavailable"
    assert result["error"]["retry_after_seconds"] == 5
    assert smtp_sink.messages == []
    wid = workspace["workspace_id"]
    others = [
        tools.get_email_status(str(uuid.uuid4())),
        tools.validate_circuits(wid, execution_id),
        tools.record_circuit_result(wid, "exec_other", "CX01", True),
        tools.suppress(wid, "gone@example.com", "bounced"),
        tools.get_send_history(wid),
    ]
    assert [r["error"]["code"] for r in others] == ["storage_unavailable"] * len(others)

    link.restore()
    again = send(workspace, circuit_execution_id=execution_id)  # nothing was written before
    assert again["status"] == "sent", again
    assert len(smtp_sink.messages) == 1


def test_an_outcome_that_cannot_be_recorded_is_reported_and_never_resent(
    service, smtp_sink, mocker
):
    link, workspace, execution_id = service
    smtp_sink.recorder.on_data = link.cut  # the database goes while the server holds DATA

    result = send(workspace, circuit_execution_id=execution_id)

    assert result["status"] == "sending" and result["email_id"] is not None
    assert result["error"]["code"] == "delivery_unrecorded"
    assert result["execution_result"]["sent"] is True
    assert result["execution_result"]["provider"] == "smtp"
    assert len(smtp_sink.messages) == 1

    smtp_sink.recorder.on_data = None
    link.restore()
    repeat = send(workspace, circuit_execution_id=execution_id)
    assert repeat["error"]["code"] == "duplicate_send" and repeat["status"] == "sending"
    mocker.patch("tools.clock.utcnow", return_value=clock.utcnow() + timedelta(seconds=3601))
    assert tools.escalate_stalled_sends() == 1  # reconciled by the sweep, as any stalled send
    status = tools.get_email_status(result["email_id"])
    assert status["status"] == "escalated" and status["error_code"] == "delivery_unconfirmed"
    assert len(smtp_sink.messages) == 1


def test_over_http_a_database_that_is_away_is_503_with_retry_after(service, smtp_sink):
    link, workspace, execution_id = service
    client = create_app().test_client()
    headers = {"Authorization": f"Bearer {workspace['api_key']}"}
    body = {
        "client_id": "550e8400-e29b-41d4-a716-446655440000",
        "circuit_execution_id": execution_id,
        "recipient": "bob@example.com",
    }
    smtp_sink.recorder.on_data = link.cut
    during = client.post("/api/circuits/agents/email/send", json=body, headers=headers)
    smtp_sink.recorder.on_data = None
    down = client.get("/api/email/providers", headers=headers)  # the key lookup fails too

    for reply, code in ((during, "delivery_unrecorded"), (down, "storage_unavailable")):
        assert reply.status_code == 503, reply.get_data(as_text=True)
        assert reply.headers["Retry-After"] == "5"
        assert reply.get_json()["error"]["code"] == code
        assert "postgres" not in reply.get_data(as_text=True).lower()
    assert len(smtp_sink.messages) == 1


def test_a_pooled_connection_whose_ping_fails_oddly_is_replaced(postgres_url, mocker):
    # psycopg, finding the socket closed during the pool's ping, can raise a ProgrammingError
    # ("can't change 'autocommit' now") before the connection reads as broken: a race no
    # test can time, so the ping is made to fail that way.
    import psycopg

    engine = make_engine(postgres_url)
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))  # pooled now: the next checkout pings it
    failure = psycopg.ProgrammingError("can't change 'autocommit' now")
    mocker.patch.object(engine.dialect, "do_ping", side_effect=failure)

    with engine.connect() as conn:
        assert conn.execute(text("SELECT 1")).scalar() == 1  # a fresh connection
    engine.dispose()
