"""CR/LF in anything that becomes a header is refused by the project itself, before sending."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

import tools
from persistence import EmailExecution
from tests.builders import ASSET, approve

CLIENT = "550e8400-e29b-41d4-a716-446655440000"
EVIL = "x\r\nBcc: victim@evil.example"


@pytest.mark.parametrize(
    "change",
    [
        {"final_asset": {**ASSET, "subject": "Hello" + EVIL}},
        {"final_asset": {**ASSET, "subject": "Hello\nthere"}},
        {"final_asset": {**ASSET, "preheader": "pre" + EVIL}},
        {"final_asset": {**ASSET, "tags": ["ok", "tag" + EVIL]}},
        {"recipient": "bob@example.com" + EVIL},
        {"recipient": "bob@example.com\r"},
        {"cc": ["carol@example.com" + EVIL]},
        {"bcc": ["dave@example.com\n"]},
    ],
    ids=["subject", "subject-lf", "preheader", "tag", "recipient", "recipient-cr", "cc", "bcc"],
)
def test_line_break_in_a_header_value_is_header_injection(change, workspace, smtp_sink, runtime):
    wid = workspace["workspace_id"]
    arguments = {
        "workspace_id": wid,
        "client_id": CLIENT,
        "circuit_execution_id": approve(wid),
        "recipient": "bob@example.com",
        "final_asset": ASSET,
        **change,
    }
    result = tools.send_email(**arguments)

    assert result["status"] == "blocked"
    assert result["error"]["code"] == "header_injection", result
    assert smtp_sink.messages == []
    with runtime.sessions() as session:
        assert session.scalar(select(func.count()).select_from(EmailExecution)) == 0


def test_cx06_output_with_a_line_break_in_its_subject_is_refused_at_recording(workspace):
    result = tools.record_circuit_result(
        workspace["workspace_id"], "exec_evil", "CX06", True, output={**ASSET, "subject": EVIL}
    )
    assert result["success"] is False
    assert result["error"]["code"] == "header_injection"


def test_sender_name_with_a_line_break_is_refused(runtime):
    result = tools.create_workspace("Acme", "a@acme.example", "1 Main St, X", sender_name=EVIL)
    assert result["success"] is False
    assert result["error"]["code"] == "header_injection"


@pytest.mark.parametrize(
    "character", ["\x0b", "\x0c", "\x00", "\x1c", "\x85", "\u2028", "\u2029", "\x7f"]
)
def test_any_control_or_line_separator_character_is_header_injection(
    character, workspace, smtp_sink, runtime
):
    subject = "A" * 80 + character + "Reply-To : attacker@evil.example"
    wid = workspace["workspace_id"]
    result = tools.send_email(
        wid, CLIENT, approve(wid), "bob@example.com", {**ASSET, "subject": subject}
    )
    assert result["error"]["code"] == "header_injection", result
    named = tools.create_workspace("A", "a@a.example", "1 Road, Town", "Acme" + character)
    assert named["error"]["code"] == "header_injection"
    assert smtp_sink.messages == []
