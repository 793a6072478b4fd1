"""Builders the tests share: settings on the test's database and sink, approved circuit
executions, sends, and emails as the pipeline hands them to providers."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import tools
from settings import Settings, load_settings
from tests.fake_providers import FakeResend, FakeSendGrid
from tests.smtp_sink import SMTPSink
from tools.providers.base import Content, OutgoingEmail

CIRCUITS = ("CX01", "CX02", "CX03", "CX04", "CX05")
ASSET: dict[str, Any] = {
    "subject": "Your account update",
    "preheader": "Read this before Friday",
    "html_body": "<h1>Hello!</h1>\n<p>We have an important update for you.</p>",
    "text_body": "Hello!\n\nWe have an important update for you.",
    "tags": ["account-update"],
}


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


# The tests' signing secret (any 32 characters or more will do).
SIGNING_SECRET = "test-signing-secret-of-at-least-32-chars"


def make_settings(database_url: str, sink: SMTPSink, tmp_path: Path, **overrides: Any) -> Settings:
    base = load_settings({})
    values: dict[str, Any] = {
        "database_url": database_url,
        "smtp_server": "127.0.0.1",
        "smtp_port": sink.port,
        "smtp_use_tls": False,
        "retry_initial_delay": 0.01,
        "signing_secret": SIGNING_SECRET,
        "public_base_url": "https://mail.example.test",
        "outbox_dir": tmp_path / "outbox",
        **overrides,
    }
    return base.replace(**values)


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
        "content": Content(
            html="<p>Hi</p>",
            text="Hi",
            headers={"List-Unsubscribe-Post": "List-Unsubscribe=One-Click"},
        ),
    }
    return OutgoingEmail(**{**defaults, **fields})
