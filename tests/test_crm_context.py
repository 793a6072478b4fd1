"""Seed 001's CRM context: read per workspace through a read-only transaction, stored with each
accepted send, answered by the tool and the API, loaded for a demo by `main.py load-crm`."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, select
from sqlalchemy.exc import DBAPIError

import tools
from orchestration.model_config import load_model_client
from orchestration.team import run_send_sync
from persistence import Campaign, Contact, EmailExecution, workspace_scope
from tests.builders import ASSET, approve, make_settings, send
from tests.fake_openai import FakeOpenAI
from tests.observers import parse_message
from tests.test_main import _create_workspace, _run
from tools.crm_loader import load_crm_rows, read_crm_file
from tools.errors import ToolFailure

CLIENT = "7b0e5c36-1d49-4a3b-9a55-6a1f2b3c4d5e"


def _crm(workspace_id: str, **tables: Any) -> dict[str, Any]:
    rows: dict[str, Any] = {
        "contacts": [
            {
                "email": "Bob@Example.com",
                "lead_stage": "customer",
                "last_contacted_at": "2026-11-20T09:30:00+00:00",
            },
            {"email": "bob@example.com", "lead_stage": "prospect"},  # never contacted: older
        ],
        "organizations": [
            {
                "id": CLIENT,
                "name": "Springfield Plumbing",
                "service_category": "plumbing",
                "location": "Springfield, IL",
            }
        ],
        "campaigns": [
            {
                "name": "Spring",
                "organization_id": CLIENT,
                "historical_engagement": {"open_rate": 0.2},
                "started_at": "2026-03-01T00:00:00Z",
            },
            {
                "name": "Autumn",
                "organization_id": CLIENT,
                "historical_engagement": {"open_rate": 0.41, "click_rate": 0.07},
                "started_at": "2026-09-01T00:00:00Z",
            },
        ],
        "synthex_tenant_profiles": [{"brand_rules": {"tone": "friendly", "banned": ["cheap"]}}],
    }
    rows.update(tables)
    result = load_crm_rows(workspace_id, **rows)
    assert result["success"], result
    return result


EXPECTED = {
    "lead_stage": "customer",
    "last_contacted_at": "2026-11-20T09:30:00+00:00",
    "service_category": "plumbing",
    "location": "Springfield, IL",
    "historical_engagement": {"open_rate": 0.41, "click_rate": 0.07},
    "brand_rules": {"tone": "friendly", "banned": ["cheap"]},
}


def test_the_context_is_seed_001s_shape_from_the_four_tables(workspace):
    _crm(workspace["workspace_id"])

    result = tools.get_crm_context(workspace["workspace_id"], "BOB@example.com", CLIENT)

    assert result["success"] is True
    assert result["crm_context"] == EXPECTED


def test_what_the_crm_does_not_know_is_left_out(runtime, workspace):
    _crm(workspace["workspace_id"])
    # The CRM is another system's: engagement it wrote that is not a number is left out.
    with workspace_scope(workspace["workspace_id"]), runtime.engine.begin() as conn:
        conn.execute(
            insert(Campaign),
            {
                "id": "3c1f5a2e-0a4b-4c6d-8e9f-1a2b3c4d5e6f",
                "workspace_id": workspace["workspace_id"],
                "organization_id": CLIENT,
                "name": "Winter",
                "historical_engagement": {"open_rate": "high", "sent": 1200, "paused": True},
                "started_at": datetime(2026, 12, 1, tzinfo=UTC),
            },
        )

    unknown = tools.get_crm_context(workspace["workspace_id"], "nobody@example.com")
    no_client = tools.get_crm_context(workspace["workspace_id"], "bob@example.com")
    newest = tools.get_crm_context(workspace["workspace_id"], "eve@example.com", CLIENT)

    brand_rules = EXPECTED["brand_rules"]
    assert unknown["crm_context"] == {"brand_rules": brand_rules}
    assert no_client["crm_context"] == {
        "lead_stage": "customer",
        "last_contacted_at": "2026-11-20T09:30:00+00:00",
        "brand_rules": brand_rules,
    }
    assert newest["crm_context"] == {
        "service_category": "plumbing",
        "location": "Springfield, IL",
        "historical_engagement": {"sent": 1200},
        "brand_rules": brand_rules,
    }


def test_one_workspace_never_sees_anothers_crm(workspace, other_workspace):
    _crm(workspace["workspace_id"])

    seen = tools.get_crm_context(other_workspace["workspace_id"], "bob@example.com", CLIENT)
    borrowed = load_crm_rows(
        other_workspace["workspace_id"],
        campaigns=[{"name": "Theirs", "organization_id": CLIENT}],
    )

    assert seen["crm_context"] == {}
    assert borrowed["success"] is False
    assert "organization_id: no such organization" in borrowed["error"]["message"]


def test_a_write_through_the_read_only_path_fails_on_sqlite(runtime, workspace):
    _assert_read_only(runtime, workspace["workspace_id"])


def test_a_write_through_the_read_only_path_fails_on_postgresql(postgres_url, smtp_sink, tmp_path):
    runtime = tools.configure(make_settings(postgres_url, smtp_sink, tmp_path))
    try:
        workspace = tools.create_workspace("Acme", "news@acme.example", "1 Main Street, Town")
        other = tools.create_workspace("Globex", "hi@globex.example", "2 Side Road, Town")
        _crm(workspace["workspace_id"])
        taken = load_crm_rows(other["workspace_id"], organizations=[{"id": CLIENT, "name": "X"}])
        assert taken["success"] is False and "already in use" in taken["error"]["message"]
        assert tools.get_crm_context(workspace["workspace_id"], "bob@example.com", CLIENT)[
            "crm_context"
        ] == (EXPECTED)
        _assert_read_only(runtime, workspace["workspace_id"])
    finally:
        tools.shutdown()


def _assert_read_only(runtime: Any, workspace_id: str) -> None:
    row = {"id": "0b7e9a52-8c3d-4f1e-9a2b-3c4d5e6f7a8b", "workspace_id": workspace_id}
    with workspace_scope(workspace_id):
        _assert_read_only_in_scope(runtime, row)


def _assert_read_only_in_scope(runtime: Any, row: dict[str, str]) -> None:
    with pytest.raises(DBAPIError, match=r"(?i)read.?only"), runtime.reader.begin() as conn:
        conn.execute(insert(Contact), {**row, "email": "mallory@example.com"})
    # The connection goes back to the pool writable for the next writer.
    with runtime.engine.begin() as conn:
        conn.execute(insert(Contact), {**row, "email": "carol@example.com"})
    with runtime.reader.begin() as conn:
        assert conn.scalar(select(Contact.email).where(Contact.id == row["id"])) == (
            "carol@example.com"
        )


def test_each_send_keeps_the_context_it_was_accepted_with_and_sends_the_same_content(
    workspace, smtp_sink
):
    plain = send(workspace, "alice@example.com", client_id=CLIENT)
    _crm(workspace["workspace_id"])
    informed = send(workspace, "bob@example.com", client_id=CLIENT)
    later = load_crm_rows(
        workspace["workspace_id"],
        synthex_tenant_profiles=[{"brand_rules": {"tone": "formal"}}],
    )
    now = tools.get_crm_context(workspace["workspace_id"], "bob@example.com", CLIENT)

    with tools.get_runtime().read_sessions() as session:
        rows = {row.recipient: row.crm_context for row in session.scalars(select(EmailExecution))}
    assert plain["status"] == informed["status"] == "sent"
    assert later["success"] and now["crm_context"]["brand_rules"] == {"tone": "formal"}
    # The snapshot is what the CRM knew at acceptance, whatever it knows now.
    assert rows == {"alice@example.com": {}, "bob@example.com": EXPECTED}
    first, second = smtp_sink.messages
    assert parse_message(first.data)["Subject"] == parse_message(second.data)["Subject"]
    for known in (b"plumbing", b"friendly", b"customer", b"0.41"):
        assert known not in second.data
    detail = tools.get_execution_detail(workspace["workspace_id"], informed["email_id"])
    assert detail["crm_context"] == EXPECTED


def test_the_api_answers_for_the_keys_own_workspace(api, workspace, other_workspace):
    _crm(workspace["workspace_id"])
    path = f"/api/email/crm-context?recipient=bob%40example.com&clientId={CLIENT}"

    own = api.get(path, key=workspace["api_key"])
    other = api.get(path, key=other_workspace["api_key"])
    bad = api.get(
        "/api/email/crm-context?recipient=bob%40example.com&clientId=7", key=workspace["api_key"]
    )
    anonymous = api.get(path)

    assert own.status_code == 200 and own.json()["crm_context"] == EXPECTED
    assert other.status_code == 200 and other.json()["crm_context"] == {}
    assert bad.status_code == 400 and "clientId" in bad.json()["error"]["message"]
    assert anonymous.status_code == 401


def test_a_load_with_one_bad_row_loads_nothing(workspace):
    result = load_crm_rows(
        workspace["workspace_id"],
        contacts=[{"email": "carol@example.com"}],
        campaigns=[{"name": "Bad", "historical_engagement": {"open_rate": "high"}}],
    )

    # A row refused inside the transaction, after a good one was written in it.
    unknown_client = load_crm_rows(
        workspace["workspace_id"],
        contacts=[{"email": "carol@example.com", "lead_stage": "lead"}],
        campaigns=[{"name": "Orphan", "organization_id": CLIENT}],
    )

    assert result["success"] is False
    assert result["error"]["field"] == "campaigns.0.historical_engagement.open_rate"
    not_a_number = load_crm_rows(
        workspace["workspace_id"],
        campaigns=[{"name": "NaN", "historical_engagement": {"open_rate": float("nan")}}],
    )
    assert not_a_number["success"] is False
    assert unknown_client["success"] is False
    assert "campaigns[0].organization_id" in unknown_client["error"]["message"]
    assert (
        tools.get_crm_context(workspace["workspace_id"], "carol@example.com")["crm_context"] == {}
    )


def _chat_request(workspace_id: str) -> dict[str, Any]:
    execution = approve(workspace_id)
    return {
        "workspace_id": workspace_id,
        "client_id": CLIENT,
        "candidates": [{"circuit_execution_id": execution, "recipient": "bob@example.com"}],
    }


def test_the_group_chat_hands_the_context_to_its_agents(workspace, smtp_sink):
    _crm(workspace["workspace_id"])

    run = run_send_sync(_chat_request(workspace["workspace_id"]))

    assert run.sent
    assert run.job is not None and run.job.crm_context == EXPECTED
    assert run.verdict is not None and run.verdict.crm_context == EXPECTED
    call = next(m for m in run.transcript() if m["kind"] == "ToolCallRequestEvent")
    assert call["source"] == "CommunicationsDept"
    assert call["content"][0]["name"] == "get_crm_context"
    (message,) = smtp_sink.messages
    assert b"plumbing" not in message.data and b"friendly" not in message.data


def test_a_model_is_shown_the_context_and_still_cannot_change_content(
    workspace, smtp_sink, tmp_path
):
    _crm(workspace["workspace_id"])
    fake = FakeOpenAI().start()
    try:
        config = tmp_path / "OAI_CONFIG_LIST"
        entry = {"model": "local-model", "api_key": "sk-local-test", "base_url": f"{fake.url}/v1"}
        config.write_text(json.dumps([entry]))
        run = run_send_sync(_chat_request(workspace["workspace_id"]), load_model_client(config))

        (request,) = fake.requests
    finally:
        fake.stop()
    prompt = request.body["messages"][-1]["content"]
    assert run.sent and run.job.decided_by == "model"
    assert '"lead_stage": "customer"' in prompt and '"service_category": "plumbing"' in prompt
    (message,) = smtp_sink.messages
    assert parse_message(message.data)["Subject"] == ASSET["subject"]


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_the_cli_loads_json_and_csv_all_or_nothing(tmp_path):
    workspace_id = _create_workspace(tmp_path)["workspace_id"]
    tables = _write(
        tmp_path / "crm.json",
        json.dumps({"organizations": [{"id": CLIENT, "name": "Springfield Plumbing"}]}),
    )
    contacts = _write(
        tmp_path / "contacts.csv",
        "email,lead_stage,last_contacted_at\n"
        "bob@example.com,customer,2026-11-20T09:30:00+00:00\n"
        "eve@example.com,,\n",
    )
    bad_row = _write(
        tmp_path / "more.csv",
        "email,last_contacted_at\ncarol@example.com,\ndan@example.com,yesterday\n",
    )

    loaded_json = _run(["load-crm", workspace_id, str(tables)], tmp_path)
    loaded_csv = _run(["load-crm", workspace_id, str(contacts)], tmp_path)
    refused = _run(["load-crm", workspace_id, str(bad_row), "--table", "contacts"], tmp_path)
    unnamed = _run(["load-crm", workspace_id, str(bad_row)], tmp_path)
    missing = _run(["load-crm", workspace_id, str(tmp_path / "nope.json")], tmp_path)

    assert loaded_json.returncode == 0, loaded_json.stderr
    assert json.loads(loaded_json.stdout)["loaded"]["organizations"] == 1
    assert loaded_csv.returncode == 0, loaded_csv.stderr
    assert json.loads(loaded_csv.stdout)["loaded"]["contacts"] == 2
    # Each one line, nothing else: a file that is no file of tables is a bad input (2), as a
    # missing or malformed JSON file is to any command; a row that cannot be stored, 1.
    for failed, code in ((refused, 1), (unnamed, 2), (missing, 2)):
        assert failed.returncode == code, failed.stderr
        assert failed.stdout == "" and len(failed.stderr.splitlines()) == 1, failed.stderr
    assert "contacts.1.last_contacted_at" in refused.stderr
    assert "--table" in unnamed.stderr
    assert "nope.json" in missing.stderr


def test_a_spreadsheets_csv_reads_as_written(tmp_path):
    # Excel's "CSV UTF-8" starts with a byte-order mark; a quoted cell may span lines.
    exported = tmp_path / "organizations.csv"
    exported.write_bytes(
        "\ufeffid,name,location\r\n"
        f'{CLIENT},Springfield Plumbing,"1 Main St\nSuite 2"\r\n'
        "9d2f7e48-3f6b-4c5d-8b77-8c3d4e5f6a7b,Shelbyville Roofing\r\n".encode()
    )

    with pytest.raises(ToolFailure, match=r"organizations.csv:4: wrong number of cells"):
        read_crm_file(exported)
    exported.write_bytes(exported.read_bytes().replace(b"Roofing", b"Roofing,"))
    rows = read_crm_file(exported)["organizations"]

    assert rows == [
        {"id": CLIENT, "name": "Springfield Plumbing", "location": "1 Main St\nSuite 2"},
        {"id": "9d2f7e48-3f6b-4c5d-8b77-8c3d4e5f6a7b", "name": "Shelbyville Roofing"},
    ]
