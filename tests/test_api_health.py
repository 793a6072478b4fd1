"""`/healthz` and `/readyz`: open, cheap, and `/readyz` failing when a part it needs is gone."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import make_url

import tools
from api import create_app
from persistence import sqlite_database_path
from tests.builders import make_settings
from tests.redis_server import PrivateRedis
from tests.tcp_proxy import CuttableProxy


def test_healthz_answers_without_a_key(api):
    reply = api.get("/healthz")
    assert (reply.status_code, reply.json()) == (200, {"status": "ok"})
    assert reply.headers["cache-control"] == "no-store"


def test_readyz_is_ready_while_the_database_answers_and_not_once_its_file_is_gone(api, runtime):
    reply = api.get("/readyz")
    assert (reply.status_code, reply.json()) == (
        200,
        {"status": "ready", "checks": {"database": "ok"}},
    )
    path = sqlite_database_path(runtime.settings.database_url)
    assert path is not None
    path.unlink()  # open connections would still read it: gone all the same

    reply = api.get("/readyz")
    assert (reply.status_code, reply.json()) == (
        503,
        {"status": "unavailable", "checks": {"database": "unavailable"}},
    )
    assert str(path) not in reply.text  # nothing revealed but the part's name


@pytest.fixture
def cut_postgres(postgres_url, smtp_sink, tmp_path):
    url = make_url(postgres_url)
    link = CuttableProxy(url.host or "127.0.0.1", url.port or 5432)
    proxied = url.set(host="127.0.0.1", port=link.port).render_as_string(hide_password=False)
    tools.configure(make_settings(proxied, smtp_sink, tmp_path))
    yield link
    link.restore()
    tools.shutdown()
    link.close()


def test_readyz_fails_while_postgresql_is_unreachable_and_recovers(cut_postgres):
    client = create_app().test_client()
    assert client.get("/readyz").status_code == 200
    cut_postgres.cut()
    reply = client.get("/readyz")
    assert (reply.status_code, reply.get_json()["checks"]) == (503, {"database": "unavailable"})
    cut_postgres.restore()
    assert client.get("/readyz").status_code == 200


def test_readyz_checks_the_broker_once_one_is_configured(sqlite_url, smtp_sink, tmp_path):
    broker = PrivateRedis().start()
    tools.configure(make_settings(sqlite_url, smtp_sink, tmp_path, celery_broker_url=broker.url))
    try:
        client = create_app().test_client()
        reply = client.get("/readyz")
        assert (reply.status_code, reply.get_json()["checks"]) == (
            200,
            {"database": "ok", "broker": "ok"},
        )
        broker.stop()
        reply = client.get("/readyz")
        assert (reply.status_code, reply.get_json()["checks"]) == (
            503,
            {"database": "ok", "broker": "unavailable"},
        )
    finally:
        broker.stop()
        tools.shutdown()
