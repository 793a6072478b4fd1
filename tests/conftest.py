"""Shared fixtures: a real aiosmtpd server, a real SQLite file, PostgreSQL when configured."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import signal
import sqlite3
import subprocess
import time
import uuid
from collections.abc import Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url

import tools
from api import create_app
from persistence import DeliveryAttempt, make_engine, sqlite_database_path, upgrade_to_head
from settings import Settings, load_settings
from tests.api_client import API, InProcessClient, LiveServerClient
from tests.fake_providers import FakeResend, FakeSendGrid
from tests.smtp_sink import RecordingHandler, SMTPSink
from tools.providers.base import Content, OutgoingEmail

CIRCUITS = ("CX01", "CX02", "CX03", "CX04", "CX05")
ASSET: dict[str, Any] = {
    "subject": "Your account update",
    "preheader": "Read this before Friday",
    "html_body": "<h1>Hello!</h1>\n<p>We have an important update for you.</p>",
    "text_body": "Hello!\n\nWe have an important update for you.",
    "tags": ["account-update"],
}


@pytest.fixture
def smtp_sink() -> Iterator[SMTPSink]:
    """A real aiosmtpd server on 127.0.0.1 that records what it receives."""
    sink = SMTPSink(RecordingHandler())
    sink.start()
    yield sink
    sink.stop()


@pytest.fixture
def sendgrid_fake() -> Iterator[FakeSendGrid]:
    """A local SendGrid v3 Mail Send that validates and records like the real one."""
    fake = FakeSendGrid().start()
    yield fake
    fake.stop()


@pytest.fixture
def resend_fake() -> Iterator[FakeResend]:
    """A local Resend `POST /emails`, Idempotency-Key semantics included."""
    fake = FakeResend().start()
    yield fake
    fake.stop()


def api_settings(
    sendgrid: FakeSendGrid | None = None, resend: FakeResend | None = None
) -> dict[str, Any]:
    """Settings overrides that put the given fakes in the chain."""
    values: dict[str, Any] = {}
    if sendgrid is not None:
        values.update(sendgrid_api_key=sendgrid.api_key, sendgrid_api_base_url=sendgrid.url)
    if resend is not None:
        values.update(resend_api_key=resend.api_key, resend_api_base_url=resend.url)
    return values


@pytest.fixture(scope="session")
def migrated_sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated once; each test copies it instead of migrating again."""
    path = tmp_path_factory.mktemp("template") / "template.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade_to_head(engine)
    engine.dispose()
    return path


@pytest.fixture
def sqlite_url(tmp_path: Path, migrated_sqlite_template: Path) -> str:
    path = tmp_path / "email_agent.db"
    shutil.copy(migrated_sqlite_template, path)
    return f"sqlite:///{path}"


def make_settings(database_url: str, sink: SMTPSink, tmp_path: Path, **overrides: Any) -> Settings:
    base = load_settings({})
    values: dict[str, Any] = {
        "database_url": database_url,
        "smtp_server": "127.0.0.1",
        "smtp_port": sink.port,
        "smtp_use_tls": False,
        "retry_initial_delay": 0.01,
        "signing_secret": "test-signing-secret",
        "public_base_url": "https://mail.example.test",
        "outbox_dir": tmp_path / "outbox",
        **overrides,
    }
    return dataclasses.replace(base, **values)


@pytest.fixture
def settings(sqlite_url: str, smtp_sink: SMTPSink, tmp_path: Path) -> Settings:
    return make_settings(sqlite_url, smtp_sink, tmp_path)


@pytest.fixture
def runtime(settings: Settings) -> Iterator[tools.runtime.Runtime]:
    """The tools configured against the test database and SMTP sink."""
    yield tools.configure(settings)
    tools.shutdown()


@pytest.fixture
def workspace(runtime: Any) -> dict[str, Any]:
    result = tools.create_workspace(
        "Acme", "news@acme.example", "1 Main Street\nSpringfield, IL 62701", sender_name="Acme News"
    )
    assert result["success"], result
    return result


@pytest.fixture
def other_workspace(runtime: Any) -> dict[str, Any]:
    """A second tenant, for checking that one never sees the other's data."""
    result = tools.create_workspace("Globex", "hello@globex.example", "2 Side Road, Shelbyville")
    assert result["success"], result
    return result


@pytest.fixture(params=["flask", "http"])
def api(request: pytest.FixtureRequest, runtime: Any) -> Iterator[API]:
    """The HTTP API on the test runtime, through Flask's test client and through waitress."""
    app = create_app()
    client = InProcessClient(app) if request.param == "flask" else LiveServerClient(app)
    yield API(client)
    client.close()


def approve(
    workspace_id: str, execution_id: str | None = None, asset: dict[str, Any] | None = ASSET
) -> str:
    """Log CX01-CX06 as passed (CX06 with `asset` as its output) and return the execution id."""
    execution_id = execution_id or f"exec_{uuid.uuid4().hex[:12]}"
    for code in CIRCUITS:
        assert tools.record_circuit_result(workspace_id, execution_id, code, True)["success"]
    result = tools.record_circuit_result(workspace_id, execution_id, "CX06", True, output=asset)
    assert result["success"], result
    return execution_id


def send(workspace: dict[str, Any], recipient: str = "bob@example.com", **kw: Any) -> dict:
    """Approve a fresh execution and send ASSET (or kw's final_asset) to `recipient`."""
    asset = kw.pop("final_asset", ASSET)
    execution_id = kw.pop("circuit_execution_id", None) or approve(
        workspace["workspace_id"], asset=kw.pop("cx06_output", asset)
    )
    return tools.send_email(
        workspace["workspace_id"],
        kw.pop("client_id", "550e8400-e29b-41d4-a716-446655440000"),
        execution_id,
        recipient,
        asset,
        **kw,
    )


def child_environment(settings: Settings, sink: SMTPSink) -> dict[str, str]:
    """The environment for a `main.py` child process on the test database and SMTP sink."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SMTP_", "EMAIL_"))}
    env.update(
        EMAIL_LOG_DATABASE_URL=settings.database_url,
        SMTP_SERVER="127.0.0.1",
        SMTP_PORT=str(sink.port),
        SMTP_USE_TLS="false",
        EMAIL_SIGNING_SECRET="s",
        EMAIL_PUBLIC_BASE_URL="https://mail.example.test",
    )
    return env


def stop_once_a_message_arrives(process: subprocess.Popen[str], sink: SMTPSink) -> int:
    """SIGTERM `process`, as a process manager stops it, once `sink` holds a message; returns
    its exit code. A process still running 30 s later is killed (and the test fails)."""
    try:
        deadline = time.monotonic() + 60
        while not sink.messages:
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            assert time.monotonic() < deadline, "no message reached the SMTP server"
            time.sleep(0.02)
        process.send_signal(signal.SIGTERM)
        return process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def outgoing_email(**fields: Any) -> OutgoingEmail:
    """An email as the pipeline hands it to providers; `fields` replace the defaults."""
    defaults: dict[str, Any] = {
        "email_id": "6f1c2a9e-1b2c-4d5e-8f90-123456789abc",
        "workspace_id": "0d9f8e7c-6b5a-4c3d-2e1f-0a9b8c7d6e5f",
        "idempotency_key": "6f1c2a9e-1b2c-4d5e-8f90-123456789abc.0",
        "message_id": "<6f1c2a9e@acme.example>",
        "sender_email": "news@acme.example",
        "sender_name": None,
        "to": "bob@example.com",
        "cc": (),
        "bcc": (),
        "subject": "Hello",
        "render": lambda: Content(
            html="<p>Hi</p>",
            text="Hi",
            headers={"List-Unsubscribe-Post": "List-Unsubscribe=One-Click"},
        ),
    }
    return OutgoingEmail(**{**defaults, **fields})


def committed_statuses(runtime: Any) -> list[str]:
    """The execution statuses another process would read now, oldest first.

    A plain SQLite reader: in WAL mode it never waits for a writer, so it sees only what is
    committed (the project's own sessions begin IMMEDIATE, and would wait for the lock).
    """
    path = sqlite_database_path(runtime.settings.database_url)
    with contextlib.closing(sqlite3.connect(path, timeout=1)) as reader:
        rows = reader.execute("SELECT status FROM email_agent_executions ORDER BY created_at")
        return [status for (status,) in rows]


def attempt_rows(email_id: str) -> list[DeliveryAttempt]:
    """The recorded delivery attempts of one email, in order."""
    with tools.get_runtime().sessions() as session:
        return list(
            session.scalars(
                select(DeliveryAttempt)
                .where(DeliveryAttempt.execution_id == email_id)
                .order_by(DeliveryAttempt.attempt_number)
            )
        )


def parse_message(raw: bytes) -> EmailMessage:
    return message_from_bytes(raw, policy=policy.default)  # type: ignore[return-value]


def body_of(message: EmailMessage, kind: str) -> str:
    """The decoded html or plain part, with the wire's CRLF turned back into LF."""
    part = message.get_body((kind,))
    assert part is not None, f"no {kind} part"
    return part.get_content().replace("\r\n", "\n")


# PostgreSQL ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres_server_url() -> str:
    url = os.environ.get("EMAIL_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("PostgreSQL tests need EMAIL_TEST_POSTGRES_URL (e.g. postgresql+psycopg://...)")
    try:
        engine = create_engine(url)
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        engine.dispose()
    except Exception as error:
        pytest.skip(f"PostgreSQL at EMAIL_TEST_POSTGRES_URL is unreachable: {type(error).__name__}")
    return url


@pytest.fixture
def postgres_url(postgres_server_url: str) -> Iterator[str]:
    """A database of its own on the shared server, dropped afterwards."""
    name = f"email_test_{uuid.uuid4().hex[:16]}"
    admin = create_engine(postgres_server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(postgres_server_url).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
