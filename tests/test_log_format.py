"""Log lines carry the fields the code attaches, in plain text or JSON, and never a secret."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from api import create_app
from log_format import JSONFormatter, PlainFormatter
from tests.builders import approve

REPO = Path(__file__).resolve().parent.parent


def _record(**fields: object) -> logging.LogRecord:
    record = logging.LogRecord("tools.send", logging.INFO, __file__, 1, "email sent", (), None)
    record.__dict__.update(fields)
    return record


def test_the_plain_format_writes_the_attached_fields_after_the_message():
    line = PlainFormatter().format(_record(email_id="e-1", workspace_id="w-1", provider="smtp"))
    assert line.endswith("tools.send: email sent email_id=e-1 workspace_id=w-1 provider=smtp")


def test_a_field_cannot_break_a_line_or_pass_for_another_field():
    line = PlainFormatter().format(_record(last_error="bad\nlevel=CRITICAL x=1"))
    assert "\n" not in line
    assert 'last_error="bad\\nlevel=CRITICAL x=1"' in line


def test_the_json_format_is_one_object_per_line_with_the_fields_and_the_traceback():
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        record = _record(email_id="e-1", error_code="internal_error")
        record.exc_info = sys.exc_info()
    entry = json.loads(JSONFormatter().format(record))
    assert (entry["level"], entry["logger"], entry["message"]) == (
        "INFO",
        "tools.send",
        "email sent",
    )
    assert (entry["email_id"], entry["error_code"]) == ("e-1", "internal_error")
    assert "RuntimeError: boom" in entry["exception"]


@pytest.mark.parametrize("name", ["api_key", "token", "smtp_password", "html_body", "secret"])
def test_a_field_named_like_a_secret_is_hidden(name):
    line = PlainFormatter().format(_record(**{name: "s3cr3t-value"}))
    assert "s3cr3t-value" not in line and f"{name}=[hidden]" in line


def test_a_real_send_logs_its_fields_and_no_key_or_body(runtime, workspace, smtp_sink):
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JSONFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    previous = root.level
    root.setLevel(logging.INFO)
    marker = "Body-marker-7f3a"
    asset = {"subject": "Hello", "html_body": f"<p>{marker}</p>"}
    execution_id = approve(workspace["workspace_id"], asset=asset)
    try:
        answer = (
            create_app()
            .test_client()
            .post(
                "/api/email/send",
                json={
                    "to": "bob@example.com",
                    "subject": "Hello",
                    "body": asset["html_body"],
                    "circuit_execution_id": execution_id,
                    "client_id": "550e8400-e29b-41d4-a716-446655440000",
                },
                headers={"Authorization": f"Bearer {workspace['api_key']}"},
            )
        )
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)
    assert answer.status_code == 200, answer.get_json()
    assert len(smtp_sink.messages) == 1
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    [sent] = [line for line in lines if line["message"] == "email sent"]
    assert sent["email_id"] == answer.get_json()["email_id"]
    assert (sent["workspace_id"], sent["provider"]) == (workspace["workspace_id"], "smtp")
    written = stream.getvalue()
    assert workspace["api_key"] not in written and marker not in written
    assert runtime.settings.signing_secret not in written


def test_main_writes_json_lines_when_asked(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SMTP_", "EMAIL_"))}
    env.update(EMAIL_LOG_FORMAT="json", EMAIL_LOG_DATABASE_URL=f"sqlite:///{tmp_path}/x.db")
    done = subprocess.run(
        [sys.executable, str(REPO / "main.py"), "worker", "--once"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stderr.splitlines() if line.strip()]
    assert lines and all({"time", "level", "logger", "message"} <= set(line) for line in lines)


def test_a_message_cannot_break_its_line_either():
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "got %s", ("a\nFAKE line",), None)
    line = PlainFormatter().format(record)
    assert "\n" not in line and line.endswith("x: got a\\nFAKE line")
