"""The operators' JSON routes: suppressions listed, added and removed, escalations listed and
acknowledged; each change recorded with the key's fingerprint and why, and one workspace's
key never seeing or touching another's."""

from __future__ import annotations

import hashlib
from datetime import timedelta

from sqlalchemy import select

import tools
from persistence import OperatorAction
from tests.builders import send
from tools import clock


def _fingerprint(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def _recorded() -> list[tuple[str, str, str, str | None]]:
    with tools.get_runtime().read_sessions() as session:
        rows = session.scalars(select(OperatorAction).order_by(OperatorAction.created_at))
        return [(r.action, r.subject, r.note, r.key_fingerprint) for r in rows]


def test_suppressions_are_added_searched_and_removed_with_a_record(api, workspace, other_workspace):
    key = workspace["api_key"]
    added = api.post(
        "/api/email/suppressions",
        key=key,
        json={"email": "Carol@Example.com", "reason": "complained", "note": "asked by phone"},
    )
    assert added.status_code == 201 and added.json()["email"] == "carol@example.com"
    tools.suppress(workspace["workspace_id"], "dave@example.com", "unsubscribed")

    found = api.get("/api/email/suppressions", key=key, params={"search": "carol"}).json()
    assert [e["email"] for e in found["suppressions"]] == ["carol@example.com"]
    assert api.get("/api/email/suppressions", key=key).json()["total_count"] == 2
    assert (
        api.get("/api/email/suppressions", key=other_workspace["api_key"]).json()["suppressions"]
        == []
    )
    body = {"email": "carol@example.com", "note": "resubscribed in writing"}
    stranger = api.post("/api/email/suppressions/remove", key=other_workspace["api_key"], json=body)
    assert stranger.status_code == 404

    removed = api.post("/api/email/suppressions/remove", key=key, json=body)

    assert removed.status_code == 200 and removed.json()["removed_entries"] == 1
    assert tools.is_suppressed(workspace["workspace_id"], "carol@example.com") is False
    assert api.post("/api/email/suppressions/remove", key=key, json=body).status_code == 404
    assert _recorded() == [
        ("add_suppression", "carol@example.com", "asked by phone", _fingerprint(key)),
        ("remove_suppression", "carol@example.com", "resubscribed in writing", _fingerprint(key)),
    ]


def test_a_suppression_change_needs_a_note(api, workspace):
    reply = api.post(
        "/api/email/suppressions/remove", key=workspace["api_key"], json={"email": "a@example.com"}
    )
    assert reply.status_code == 400 and reply.json()["error"]["code"] == "missing_field"


def test_escalations_are_listed_and_acknowledged_once(
    api, workspace, other_workspace, smtp_sink, runtime, mocker
):
    smtp_sink.recorder.rcpt_replies.extend(["554 5.7.1 Message refused by policy"] * 2)
    failed = send(workspace, "gone@example.com")
    assert failed["status"] == "scheduled"  # CX08's one reschedule
    later = clock.utcnow() + timedelta(seconds=runtime.settings.reschedule_delay_seconds + 1)
    mocker.patch("tools.clock.utcnow", return_value=later)
    assert tools.send_due_emails()["delivery_failed"] == 1  # failed again: escalated
    fine = send(workspace, "bob@example.com")
    key, email_id = workspace["api_key"], failed["email_id"]

    listed = api.get("/api/email/escalations", key=key).json()
    assert [(e["email_id"], e["error_code"]) for e in listed["escalations"]] == [
        (email_id, "all_providers_failed")
    ]
    assert (
        api.get("/api/email/escalations", key=other_workspace["api_key"]).json()["escalations"]
        == []
    )
    path = f"/api/email/escalations/{email_id}/acknowledge"
    note = {"note": "address closed: removed from the CRM"}
    assert api.post(path, key=other_workspace["api_key"], json=note).status_code == 404
    not_escalated = f"/api/email/escalations/{fine['email_id']}/acknowledge"
    assert api.post(not_escalated, key=key, json=note).status_code == 400

    done = api.post(path, key=key, json=note)

    assert done.status_code == 200
    assert done.json()["acknowledged"]["key"] == _fingerprint(key)
    assert api.post(path, key=key, json=note).json()["error"]["code"] == "already_acknowledged"
    assert api.get("/api/email/escalations", key=key).json()["escalations"] == []
    everything = api.get(
        "/api/email/escalations", key=key, params={"includeAcknowledged": "true"}
    ).json()
    [entry] = everything["escalations"]
    assert entry["acknowledged"]["note"] == note["note"]
    assert _recorded() == [("acknowledge_escalation", email_id, note["note"], _fingerprint(key))]
