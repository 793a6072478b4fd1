"""A workspace's sender, postal address and hourly limit, changed after creation through the
tool, the API and the CLI: recorded, and used by the next send."""

from __future__ import annotations

import json

from sqlalchemy import select

import tools
from persistence import OperatorAction
from tests.builders import send
from tests.observers import body_of, parse_message
from tests.test_main import _create_workspace, _run
from tools.workspaces import hash_api_key


def _recorded(workspace_id: str) -> list[tuple[str, str, str | None]]:
    with tools.get_runtime().read_sessions() as session:
        rows = session.scalars(
            select(OperatorAction).where(OperatorAction.workspace_id == workspace_id)
        )
        return [(r.action, r.note, r.key_fingerprint) for r in rows]


def test_changes_take_effect_on_the_next_send_and_are_recorded(workspace, smtp_sink):
    wid = workspace["workspace_id"]

    result = tools.update_workspace(
        wid,
        sender_email="Letters@Acme.example",
        sender_name="Acme Letters",
        postal_address="9 New Street\nShelbyville",
        rate_limit_per_hour=1,
        note="moved office",
    )
    first = send(workspace, "one@example.com")
    over = send(workspace, "two@example.com")

    assert result["success"] and result["rate_limit_per_hour"] == 1
    assert result["sender_email"] == "Letters@acme.example"
    message = parse_message(smtp_sink.messages[0].data)
    assert message["From"] == "Acme Letters <Letters@acme.example>"
    assert "9 New Street" in body_of(message, "plain")
    assert first["status"] == "sent"
    assert over["error"]["code"] == "rate_limit_exceeded"
    ((action, note, _),) = _recorded(wid)
    assert action == "update_workspace"
    assert "rate_limit_per_hour: None -> 1" in note and note.endswith("(moved office)")
    assert tools.get_workspace(wid)["postal_address"] == "9 New Street\nShelbyville"


def test_a_bad_change_is_refused_and_changes_nothing(workspace):
    wid = workspace["workspace_id"]
    before = tools.get_workspace(wid)

    nothing = tools.update_workspace(wid)
    bad_sender = tools.update_workspace(wid, sender_email="not an address", rate_limit_per_hour=5)
    injected = tools.update_workspace(wid, sender_name="Acme\r\nBcc: eve@example.com")
    zero = tools.update_workspace(wid, rate_limit_per_hour=0)
    unknown = tools.update_workspace("00000000-0000-4000-8000-000000000000", rate_limit_per_hour=5)

    assert "at least one of" in nothing["error"]["message"]
    assert bad_sender["error"]["code"] == "invalid_input"
    assert injected["error"]["code"] == "header_injection"
    assert zero["error"]["code"] == "invalid_input"
    assert unknown["error"]["code"] == "unknown_workspace"
    assert tools.get_workspace(wid) == before
    assert _recorded(wid) == []


def test_the_api_reads_and_changes_only_the_keys_own_workspace(api, workspace, other_workspace):
    key = workspace["api_key"]

    read = api.get("/api/email/workspace", key=key)
    changed = api.patch(
        "/api/email/workspace", key=key, json={"rate_limit_per_hour": 50, "note": "campaign"}
    )
    empty = api.patch("/api/email/workspace", key=key, json={})
    stranger = api.get("/api/email/workspace", key=other_workspace["api_key"])
    anonymous = api.get("/api/email/workspace")

    assert read.status_code == 200 and read.json()["rate_limit_per_hour"] == 300
    assert "api_key" not in read.json() and "api_key_hash" not in read.json()
    assert changed.status_code == 200 and changed.json()["rate_limit_per_hour"] == 50
    assert empty.status_code == 400
    assert stranger.json()["workspace_id"] == other_workspace["workspace_id"]
    assert stranger.json()["rate_limit_per_hour"] == 300
    assert anonymous.status_code == 401
    ((_, note, fingerprint),) = _recorded(workspace["workspace_id"])
    assert fingerprint == hash_api_key(key)[:12] and "(campaign)" in note


def test_the_cli_changes_a_workspace(tmp_path):
    workspace_id = _create_workspace(tmp_path)["workspace_id"]

    changed = _run(["update-workspace", workspace_id, "--rate-limit", "20"], tmp_path)
    refused = _run(["update-workspace", workspace_id], tmp_path)

    assert changed.returncode == 0, changed.stderr
    assert json.loads(changed.stdout)["rate_limit_per_hour"] == 20
    assert refused.returncode == 1
