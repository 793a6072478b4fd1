"""Every authenticated route and status code, through Flask's test client and through
waitress on 127.0.0.1 (the `api` fixture runs each test both ways)."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

import tools
from persistence import CircuitExecutionLog
from tests.api_client import API
from tests.builders import ASSET, CIRCUITS, api_settings, approve, send
from tests.fake_http import Drop
from tests.fake_providers import sendgrid_reply
from tests.observers import parse_message
from tools import clock

CLIENT = "550e8400-e29b-41d4-a716-446655440000"
SEND = "/api/circuits/agents/email/send"
METRICS = "/api/circuits/agents/email/metrics"
EXECUTIONS = "/api/circuits/executions"


def send_body(execution_id: str, recipient: str = "bob@example.com", **kw: Any) -> dict:
    return {
        "circuit_execution_id": execution_id,
        "client_id": CLIENT,
        "recipient": recipient,
        "final_asset": ASSET,
        **kw,
    }


def post_send(api: API, workspace: dict, body: dict, **params: str):
    return api.post(
        SEND,
        key=workspace["api_key"],
        params={"workspaceId": workspace["workspace_id"], **params},
        json=body,
    )


AUTHENTICATED = [
    ("POST", EXECUTIONS),
    ("POST", SEND),
    ("GET", METRICS + "?circuitExecutionId=e1"),
    ("GET", METRICS + "?action=history"),
    ("GET", METRICS + "?action=performance"),
    ("POST", METRICS + "?action=collect-metrics"),
    ("POST", "/api/email/send"),
    ("POST", "/api/email/validate"),
    ("GET", "/api/email/status/8acf118d-da9a-45b0-9512-21f8143c6141"),
    ("GET", "/api/email/providers"),
    ("GET", "/api/email/executions?status=sent"),
    ("GET", "/api/email/providers/health"),
    ("GET", "/api/email/suppressions"),
    ("POST", "/api/email/suppressions"),
    ("POST", "/api/email/suppressions/remove"),
    ("GET", "/api/email/escalations"),
    ("POST", "/api/email/escalations/8acf118d-da9a-45b0-9512-21f8143c6141/acknowledge"),
    ("POST", "/api/email/escalations/8acf118d-da9a-45b0-9512-21f8143c6141/send-again"),
    ("GET", "/api/email/workspace"),
    ("PATCH", "/api/email/workspace"),
    ("GET", "/api/email/reputation"),
    ("POST", "/api/email/reputation/lift"),
]


# Authentication and workspace scope ----------------------------------------------------


@pytest.mark.parametrize("method,path", AUTHENTICATED)
@pytest.mark.parametrize(
    "authorization", [None, "Bearer ek_not-a-key", "Basic ek_x", "Bearer"], ids=str
)
def test_every_route_but_unsubscribe_and_webhooks_needs_a_workspace_key(
    api, workspace, smtp_sink, method, path, authorization
):
    headers = {"Authorization": authorization} if authorization else {}
    execution_id = approve(workspace["workspace_id"])

    reply = api.request(method, path, headers=headers, json=send_body(execution_id))

    assert reply.status_code == 401
    assert reply.headers["www-authenticate"] == "Bearer"
    assert reply.json()["success"] is False
    assert reply.json()["error"]["code"] == "unauthorized"
    assert smtp_sink.messages == []


@pytest.mark.parametrize("method,path", [r for r in AUTHENTICATED if "email/" not in r[1][5:]])
def test_naming_another_workspace_is_forbidden_and_does_nothing(
    api, workspace, other_workspace, smtp_sink, method, path
):
    execution_id = approve(other_workspace["workspace_id"])
    separator = "&" if "?" in path else "?"

    reply = api.request(
        method,
        f"{path}{separator}workspaceId={other_workspace['workspace_id']}",
        key=workspace["api_key"],
        json=send_body(execution_id),
    )

    assert reply.status_code == 403
    assert reply.json()["error"]["code"] == "forbidden"
    assert smtp_sink.messages == []
    assert _circuit_logs() == 6  # only the ones approve() wrote


def test_a_second_workspace_id_parameter_naming_another_workspace_is_forbidden(
    api, workspace, other_workspace
):
    reply = api.get(
        f"{METRICS}?action=history&workspaceId={workspace['workspace_id']}"
        f"&workspaceId={other_workspace['workspace_id']}",
        key=workspace["api_key"],
    )

    assert reply.status_code == 403


def _circuit_logs() -> int:
    with tools.get_runtime().sessions() as session:
        return session.scalar(select(func.count()).select_from(CircuitExecutionLog)) or 0


def test_one_workspace_never_reads_another_workspaces_emails_or_metrics(
    api, workspace, other_workspace, smtp_sink
):
    execution_id = approve(other_workspace["workspace_id"])
    sent = post_send(api, other_workspace, send_body(execution_id)).json()
    assert sent["status"] == "sent"
    key = workspace["api_key"]

    status = api.get(f"/api/email/status/{sent['email_id']}", key=key)
    history = api.get(METRICS, key=key, params={"action": "history"}).json()
    metrics = api.get(METRICS, key=key, params={"circuitExecutionId": execution_id}).json()
    performance = api.get(METRICS, key=key, params={"action": "performance"}).json()

    assert status.status_code == 404 and status.json()["error"]["code"] == "not_found"
    assert history["total_count"] == 0 and history["executions"] == []
    assert metrics["metrics_count"] == 0 and metrics["emails"] == []
    assert performance["providers"] == []
    own = api.get(f"/api/email/status/{sent['email_id']}", key=other_workspace["api_key"])
    assert own.status_code == 200 and own.json()["status"] == "sent"


def test_a_rotated_key_replaces_the_old_one(api, workspace):
    rotated = tools.rotate_api_key(workspace["workspace_id"])
    assert rotated["success"] and rotated["api_key"] != workspace["api_key"]

    old = api.get("/api/email/providers", key=workspace["api_key"])
    new = api.get("/api/email/providers", key=rotated["api_key"])

    assert old.status_code == 401
    assert new.status_code == 200


# Seed 001: circuits in, sends out -----------------------------------------------------


def test_circuit_results_logged_over_http_approve_a_send_that_arrives(api, workspace, smtp_sink):
    key, execution_id = workspace["api_key"], "1702569600000_abc123def456"
    for code in CIRCUITS:
        logged = api.post(
            EXECUTIONS,
            key=key,
            json={"circuit_execution_id": execution_id, "circuit_id": code, "success": True},
        )
        assert logged.status_code == 201, logged.json()
    cx06 = api.post(
        EXECUTIONS,
        key=key,
        json={
            "circuit_execution_id": execution_id,
            "circuit_id": "CX06",
            "success": True,
            "output": ASSET,
        },
    )
    assert cx06.status_code == 201 and cx06.json()["circuit_id"] == "CX06_GENERATION_EXECUTION"

    reply = post_send(api, workspace, send_body(execution_id))

    assert reply.status_code == 200, reply.json()
    body = reply.json()
    assert body["success"] is True and body["status"] == "sent"
    assert body["workspace_id"] == workspace["workspace_id"]
    assert body["execution_result"]["sent"] is True
    assert body["execution_result"]["provider"] == "smtp"
    assert body["circuit_validation"]["all_required_passed"] is True
    assert len(body["circuit_validation"]["circuits_passed"]) == 6
    [received] = smtp_sink.messages
    assert received.rcpt_tos == ["bob@example.com"]
    assert parse_message(received.data)["Subject"] == ASSET["subject"]


def test_a_bad_circuit_result_is_400_and_not_logged(api, workspace):
    reply = api.post(
        EXECUTIONS,
        key=workspace["api_key"],
        json={"circuit_execution_id": "e1", "circuit_id": "CX99", "success": True},
    )

    assert reply.status_code == 400
    assert reply.json()["error"]["code"] == "invalid_input"
    assert reply.json()["error"]["field"] == "circuit_id"
    state = tools.validate_circuits(workspace["workspace_id"], "e1")
    assert state["circuits_passed"] == [] and state["failed_circuits"] == []


def test_a_send_scheduled_for_later_is_202_and_not_sent_yet(api, workspace, smtp_sink):
    later = (datetime.now(UTC) + timedelta(hours=2)).isoformat()

    reply = post_send(
        api, workspace, send_body(approve(workspace["workspace_id"]), scheduled_for=later)
    )

    assert reply.status_code == 202
    assert reply.json()["status"] == "scheduled"
    assert smtp_sink.messages == []


@pytest.mark.parametrize(
    "when,reason",
    [
        ("2026-12-03T10:00:00", "scheduled_for: the date-time needs a time zone"),
        ("2100-01-01T00:00:00+00:00", "scheduled_for: must be within the next 365 days"),
    ],
)
def test_a_bad_schedule_over_http_gives_the_tools_own_reason(api, workspace, when, reason):
    wid = workspace["workspace_id"]
    tool = tools.send_email(wid, CLIENT, approve(wid), "bob@example.com", ASSET, scheduled_for=when)

    reply = post_send(api, workspace, send_body(approve(wid), scheduled_for=when))

    assert reply.status_code == 400
    assert reply.json()["error"] == tool["error"]
    assert tool["error"] == {"code": "invalid_input", "message": reason, "field": "scheduled_for"}


@pytest.mark.parametrize(
    "change,code",
    [
        ({"recipient": None}, "missing_field"),
        ({"client_id": "not-a-uuid"}, "invalid_input"),
        ({"recipient": "bob@example.com\r\nBcc: eve@example.com"}, "header_injection"),
        ({"final_asset": {**ASSET, "subject": "Hi\nBcc: eve@example.com"}}, "header_injection"),
        ({"final_asset": {**ASSET, "html_body": "x" * 100_001}}, "content_too_large"),
        ({"recipient": "not an address"}, "invalid_recipient"),
        ({"attachments": ["../../etc/passwd"]}, "attachment_rejected"),
        ({"surprise": 1}, "invalid_input"),
        ({"final_asset": {**ASSET, "tags": ["email_id"]}}, "invalid_input"),
        ({"final_asset": {**ASSET, "tags": ["Workspace_ID"]}}, "invalid_input"),
    ],
)
def test_bad_input_is_400_with_its_code_and_nothing_is_sent(
    api, workspace, smtp_sink, change, code
):
    body = {k: v for k, v in {**send_body("e1"), **change}.items() if v is not None}

    reply = post_send(api, workspace, body)

    assert reply.status_code == 400
    assert reply.json()["success"] is False
    assert reply.json()["error"]["code"] == code
    assert smtp_sink.messages == []


@pytest.mark.parametrize("content", [b"not json", b"[1, 2]", b""])
def test_a_body_that_is_not_a_json_object_is_400(api, workspace, content):
    reply = api.post(
        SEND,
        key=workspace["api_key"],
        content=content,
        headers={"Content-Type": "application/json"},
    )

    assert reply.status_code == 400
    assert reply.json()["error"]["code"] == "invalid_input"


@pytest.mark.parametrize("path", [SEND, "/api/email/send", "/api/email/validate", EXECUTIONS])
def test_json_nested_too_deeply_is_a_400_and_one_log_line(api, workspace, path, caplog):
    nested = b"[" * 1000 + b"]" * 1000  # 2 KB the parser cannot follow

    reply = api.post(
        path, key=workspace["api_key"], content=nested, headers={"Content-Type": "application/json"}
    )

    assert reply.status_code == 400
    assert reply.json()["error"] == {
        "code": "invalid_input",
        "message": "the request body is JSON nested too deeply",
    }
    logged = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r.getMessage() for r in logged] == ["request refused: JSON nested too deeply"]
    assert logged[0].exc_info is None  # no traceback


def test_failed_circuits_are_403_with_the_seed_body(api, workspace, smtp_sink):
    execution_id = "exec_no_brand_guard"
    for code in ("CX01", "CX02", "CX03", "CX04"):
        tools.record_circuit_result(workspace["workspace_id"], execution_id, code, True)
    tools.record_circuit_result(workspace["workspace_id"], execution_id, "CX06", True, ASSET)

    reply = post_send(api, workspace, send_body(execution_id))

    assert reply.status_code == 403
    error = reply.json()["error"]
    assert error["code"] == "circuit_validation_failed"
    assert error["message"] == "Circuit validation failed"
    assert error["missing_circuits"] == ["CX05_BRAND_GUARD"]
    assert "CX06_GENERATION_EXECUTION" in error["passed_circuits"]
    assert smtp_sink.messages == []


def test_suppressed_recipient_is_403(api, workspace, smtp_sink):
    tools.suppress(workspace["workspace_id"], "bob@example.com", "bounced")

    reply = post_send(api, workspace, send_body(approve(workspace["workspace_id"])))

    assert reply.status_code == 403
    assert reply.json()["error"]["code"] == "suppressed"
    assert smtp_sink.messages == []


def test_rate_limit_and_recipient_throttle_are_403(api, smtp_sink, runtime):
    limited = tools.create_workspace(
        "Tiny", "a@tiny.example", "1 Road, Town", rate_limit_per_hour=2
    )
    first = post_send(api, limited, send_body(approve(limited["workspace_id"])))
    throttled = post_send(api, limited, send_body(approve(limited["workspace_id"])))
    second = post_send(api, limited, send_body(approve(limited["workspace_id"]), "c@example.com"))
    over = post_send(api, limited, send_body(approve(limited["workspace_id"]), "d@example.com"))

    assert first.status_code == 200 and second.status_code == 200
    assert throttled.status_code == 403
    assert throttled.json()["error"]["code"] == "recipient_throttled"
    assert over.status_code == 403
    assert over.json()["error"]["code"] == "rate_limit_exceeded"
    # Seed 001's wording ("Rate Limiting"), then the figures.
    assert over.json()["error"]["message"].startswith(
        "Recipient validation failed: rate_limit_exceeded"
    )
    assert len(smtp_sink.messages) == 2


def test_a_repeated_send_is_409_with_the_first_result_and_sends_nothing(api, workspace, smtp_sink):
    body = send_body(approve(workspace["workspace_id"]))
    first = post_send(api, workspace, body)

    again = post_send(api, workspace, body)

    assert again.status_code == 409
    assert again.json()["email_id"] == first.json()["email_id"]
    assert again.json()["status"] == "sent"
    assert again.json()["error"]["code"] == "duplicate_send"
    assert len(smtp_sink.messages) == 1


def test_an_unconfirmed_hand_over_is_500_and_escalated(
    api, workspace, settings, sendgrid_fake, smtp_sink
):
    tools.configure(settings.replace(**api_settings(sendgrid_fake), timeout_seconds=2))
    sendgrid_fake.script.append(Drop(accept=True))

    reply = post_send(api, workspace, send_body(approve(workspace["workspace_id"])))

    assert reply.status_code == 500
    body = reply.json()
    assert body["success"] is False and body["status"] == "escalated"
    assert body["error"]["code"] == "delivery_unconfirmed"
    assert body["execution_result"]["sent"] is False
    assert smtp_sink.messages == []  # never handed to a second provider


def test_a_total_failure_is_500_with_cx08s_reschedule_and_a_retry_is_safe(
    api, workspace, settings, sendgrid_fake
):
    tools.configure(settings.replace(**api_settings(sendgrid_fake), smtp_server=None))
    sendgrid_fake.script.append(sendgrid_reply(400, "bad request"))
    body = send_body(approve(workspace["workspace_id"]))

    reply = post_send(api, workspace, body)
    retried = post_send(api, workspace, body)

    assert reply.status_code == 500  # seed 001's answer when every provider failed
    failed = reply.json()
    assert failed["success"] is False and failed["status"] == "scheduled"
    assert failed["error"]["code"] == "all_providers_failed"
    assert failed["self_correction"]["action"] == "reschedule"
    assert failed["self_correction"]["scheduled_for"] == failed["scheduled_for"]
    assert retried.status_code == 409 and retried.json()["email_id"] == failed["email_id"]
    assert len(sendgrid_fake.requests) == 1  # the retry sent nothing


# Metrics -------------------------------------------------------------------------------


def test_metrics_of_an_execution_and_collect_metrics(api, workspace, smtp_sink):
    execution_id = approve(workspace["workspace_id"])
    sent = post_send(api, workspace, send_body(execution_id)).json()
    key = workspace["api_key"]

    metrics = api.get(METRICS, key=key, params={"circuitExecutionId": execution_id})
    collected = api.post(METRICS, key=key, params={"action": "collect-metrics"})

    assert metrics.status_code == 200
    assert metrics.json()["metrics"] == {
        "delivered": False,
        "bounced": False,
        "opened": False,
        "clicked": False,
        "unsubscribed": False,
        "complained": False,
    }
    assert metrics.json()["metrics_count"] == 1
    assert metrics.json()["emails"][0]["email_id"] == sent["email_id"]
    assert collected.status_code == 200
    assert collected.json()["metrics_collected"] == 0
    status = tools.get_email_status(sent["email_id"])
    assert status["found"]


def test_history_is_paged_and_filtered_with_a_total_count(api, workspace, smtp_sink):
    other_client = "6f1c2d3e-0000-4000-8000-000000000001"
    for n in range(5):
        post_send(
            api, workspace, send_body(approve(workspace["workspace_id"]), f"r{n}@example.com")
        )
    post_send(
        api,
        workspace,
        send_body(approve(workspace["workspace_id"]), "r5@example.com", client_id=other_client),
    )
    key = workspace["api_key"]

    page1 = api.get(METRICS, key=key, params={"action": "history", "limit": "2"}).json()
    page3 = api.get(
        METRICS, key=key, params={"action": "history", "limit": "2", "offset": "4"}
    ).json()
    by_client = api.get(
        METRICS, key=key, params={"action": "history", "clientId": other_client}
    ).json()
    by_recipient = api.get(
        METRICS, key=key, params={"action": "history", "recipient": "R0@example.com"}
    ).json()

    assert page1["total_count"] == 6 and len(page1["executions"]) == 2
    assert page3["total_count"] == 6 and len(page3["executions"]) == 2
    seen = {e["email_id"] for e in page1["executions"]} | {
        e["email_id"] for e in page3["executions"]
    }
    assert len(seen) == 4
    assert page1["executions"][0]["subject"] == ASSET["subject"]
    assert page1["executions"][0]["sent"] is True
    assert set(page1["executions"][0]["engagement_metrics"]) >= {"delivered", "opened"}
    assert by_client["total_count"] == 1
    assert by_client["executions"][0]["client_id"] == other_client
    assert by_recipient["total_count"] == 1
    assert by_recipient["executions"][0]["recipient"] == "r0@example.com"


@pytest.mark.parametrize(
    "params,code",
    [
        ({}, "missing_field"),
        ({"action": "everything"}, "invalid_input"),
        ({"action": "history", "limit": "0"}, "invalid_input"),
        ({"action": "history", "limit": "501"}, "invalid_input"),
        ({"action": "history", "clientId": "x"}, "invalid_input"),
        ({"circuitExecutionId": "bad id!"}, "invalid_input"),
        ({"circuitExecutionId": "e1", "surprise": "1"}, "invalid_input"),
    ],
)
def test_bad_metrics_queries_are_400(api, workspace, params, code):
    reply = api.get(METRICS, key=workspace["api_key"], params=params)

    assert reply.status_code == 400
    assert reply.json()["error"]["code"] == code


def test_provider_performance_summary(api, workspace, settings, sendgrid_fake, smtp_sink):
    tools.configure(settings.replace(**api_settings(sendgrid_fake)))
    sendgrid_fake.script.append(sendgrid_reply(400, "bad request"))  # first send falls back
    for n in range(3):
        post_send(api, workspace, send_body(approve(workspace["workspace_id"]), f"p{n}@x.example"))

    reply = api.get(METRICS, key=workspace["api_key"], params={"action": "performance"})

    assert reply.status_code == 200
    providers = {p["provider"]: p for p in reply.json()["providers"]}
    # Seed 001's view's fields; the rate is a percentage.
    assert providers["sendgrid"] == {
        "provider": "sendgrid",
        "total_emails": 3,
        "successful_sends": 2,
        "success_rate": 66.67,
    }
    assert providers["smtp"]["total_emails"] == 1 and providers["smtp"]["success_rate"] == 100.0
    targets = reply.json()["targets"]
    assert targets["sending_success_rate_percent"] == {
        "value": 100.0,
        "target": "> 95",
        "met": True,
    }
    assert targets["avg_retries_per_email"] == {"value": 0.0, "target": "< 0.5", "met": True}
    assert targets["provider_response_ms"]["met"] is True
    assert targets["metrics_collection_latency_minutes"]["value"] is None  # nothing collected


def test_a_bad_collect_metrics_action_is_400(api, workspace):
    reply = api.post(METRICS, key=workspace["api_key"], params={"action": "history"})

    assert reply.status_code == 400


# Seed 000: /api/email/* ----------------------------------------------------------------


def test_seed_000_send_is_still_circuit_bound(api, workspace, smtp_sink):
    asset = {"subject": "Plain hello", "html_body": "<p>Hello there</p>"}
    execution_id = approve(workspace["workspace_id"], asset=asset)
    body = {
        "to": "carol@example.com",
        "subject": "Plain hello",
        "body": "<p>Hello there</p>",
        "circuit_execution_id": execution_id,
        "client_id": CLIENT,
    }

    sent = api.post("/api/email/send", key=workspace["api_key"], json=body)
    altered = api.post(
        "/api/email/send",
        key=workspace["api_key"],
        json={**body, "to": "dave@example.com", "subject": "Something else"},
    )
    unapproved = api.post(
        "/api/email/send",
        key=workspace["api_key"],
        json={**body, "to": "erin@example.com", "circuit_execution_id": "never_run"},
    )

    assert sent.status_code == 200 and sent.json()["status"] == "sent"
    assert altered.status_code == 403
    assert altered.json()["error"]["code"] == "content_mismatch"
    assert unapproved.status_code == 403
    assert unapproved.json()["error"]["code"] == "circuit_validation_failed"
    [received] = smtp_sink.messages
    assert received.rcpt_tos == ["carol@example.com"]


def test_seed_000_send_needs_its_fields(api, workspace):
    reply = api.post("/api/email/send", key=workspace["api_key"], json={"to": "a@example.com"})

    assert reply.status_code == 400
    assert reply.json()["error"]["code"] == "missing_field"


def test_validate_says_valid_or_why_not(api, workspace):
    good = api.post(
        "/api/email/validate", key=workspace["api_key"], json={"email": "A@Example.com"}
    )
    bad = api.post("/api/email/validate", key=workspace["api_key"], json={"email": "nope@"})
    missing = api.post("/api/email/validate", key=workspace["api_key"], json={})

    assert good.status_code == 200 and good.json()["valid"] is True
    assert good.json()["normalized"] == "A@example.com"
    assert bad.status_code == 200 and bad.json()["valid"] is False and bad.json()["error"]
    assert missing.status_code == 400 and missing.json()["error"]["code"] == "missing_field"


def test_status_of_an_email(api, workspace, smtp_sink):
    sent = post_send(api, workspace, send_body(approve(workspace["workspace_id"]))).json()

    found = api.get(f"/api/email/status/{sent['email_id']}", key=workspace["api_key"])
    unknown = api.get(
        "/api/email/status/00000000-0000-4000-8000-000000000000", key=workspace["api_key"]
    )
    malformed = api.get("/api/email/status/not-an-id", key=workspace["api_key"])

    assert found.status_code == 200
    assert found.json()["status"] == "sent" and found.json()["delivery_attempts"] == 1
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "not_found"
    assert malformed.status_code == 400


def test_providers_lists_the_chain_and_presets_but_no_secret(
    api, workspace, settings, sendgrid_fake
):
    secret_settings = settings.replace(
        **api_settings(sendgrid_fake),
        smtp_username="mailer",
        smtp_password="smtp-password-123",
    )
    tools.configure(secret_settings)

    reply = api.get("/api/email/providers", key=workspace["api_key"])

    assert reply.status_code == 200
    assert [p["name"] for p in reply.json()["providers"]] == ["sendgrid", "smtp"]
    assert set(reply.json()["smtp_presets"]) == {"gmail", "outlook", "sendgrid", "sendgrid-smtp"}
    for secret in (sendgrid_fake.api_key, "smtp-password-123", "test-signing-secret"):
        assert secret not in reply.text


# HTTP-level errors ---------------------------------------------------------------------


def test_unknown_routes_and_methods_answer_json(api, workspace):
    missing = api.get("/api/nothing-here", key=workspace["api_key"])
    wrong_method = api.request("DELETE", SEND, key=workspace["api_key"])

    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"]["code"] == "method_not_allowed"


def test_an_oversized_request_is_413_json_and_nothing_is_stored(api, workspace, runtime):
    limit = runtime.settings.api_max_request_bytes
    output = {**ASSET, "html_body": "x" * (limit + 10)}
    body = json.dumps(
        {"circuit_execution_id": "big", "circuit_id": "CX06", "success": True, "output": output}
    )

    reply = api.post(
        EXECUTIONS,
        key=workspace["api_key"],
        content=body.encode(),
        headers={"Content-Type": "application/json"},
    )

    assert reply.status_code == 413
    assert reply.json()["error"]["code"] == "request_entity_too_large"
    assert tools.validate_circuits(workspace["workspace_id"], "big")["circuits_passed"] == []


def test_an_unexpected_failure_is_a_json_500_without_details(api, workspace, runtime):
    # A real fault: the metrics table is gone from under the running service.
    with runtime.engine.begin() as connection:
        connection.exec_driver_sql("DROP TABLE email_agent_metrics")

    reply = api.get(METRICS, key=workspace["api_key"], params={"action": "history"})

    assert reply.status_code == 500
    assert reply.json() == {
        "success": False,
        "error": {
            "code": "internal_error",
            "message": "the server could not complete this request",
        },
    }
    assert "email_agent_metrics" not in reply.text and "Traceback" not in reply.text


def test_a_repeat_of_a_scheduled_send_is_409_not_202(api, workspace, smtp_sink):
    later = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
    body = send_body(approve(workspace["workspace_id"]), scheduled_for=later)
    first = post_send(api, workspace, body)

    again = post_send(api, workspace, body)

    assert first.status_code == 202
    assert again.status_code == 409
    assert again.json()["email_id"] == first.json()["email_id"]
    assert again.json()["error"]["code"] == "duplicate_send"


def test_every_tool_error_code_has_an_http_status():
    from api.responses import STATUS_BY_CODE
    from tools.errors import ErrorCode

    assert set(STATUS_BY_CODE) == set(ErrorCode)


@pytest.mark.parametrize("route", [SEND, "/api/email/send"])
def test_prefer_respond_async_answers_202_queued_with_its_status_url(
    api, workspace, smtp_sink, route
):
    execution_id = approve(workspace["workspace_id"])
    body = send_body(execution_id)
    if route != SEND:  # seed 000's shape
        body = {
            "to": "bob@example.com",
            "subject": ASSET["subject"],
            "body": ASSET["html_body"],
            "text_body": ASSET["text_body"],
            "preheader": ASSET["preheader"],
            "circuit_execution_id": execution_id,
            "client_id": CLIENT,
        }
    reply = api.post(
        route,
        key=workspace["api_key"],
        json=body,
        headers={"Prefer": "wait=10, respond-async"},
    )

    assert reply.status_code == 202, reply.text
    assert reply.json()["status"] == "queued" and reply.json()["success"] is True
    assert reply.headers["preference-applied"] == "respond-async"
    location = reply.headers["location"]
    assert location == f"/api/email/status/{reply.json()['email_id']}"
    assert smtp_sink.messages == []
    assert api.get(location, key=workspace["api_key"]).json()["status"] == "queued"

    assert tools.send_queued_emails()["sent"] == 1
    assert api.get(location, key=workspace["api_key"]).json()["status"] == "sent"
    again = api.post(
        route, key=workspace["api_key"], json=body, headers={"Prefer": "respond-async"}
    )
    assert again.status_code == 409  # the repeat of an accepted send, as without the header


def test_an_async_send_is_refused_at_once_as_a_synchronous_one_is(api, workspace, smtp_sink):
    tools.suppress(workspace["workspace_id"], "bob@example.com", "unsubscribed")
    reply = api.post(
        SEND,
        key=workspace["api_key"],
        json=send_body(approve(workspace["workspace_id"])),
        headers={"Prefer": "respond-async"},
    )
    assert reply.status_code == 403 and reply.json()["error"]["code"] == "suppressed"


def test_the_openapi_document_describes_the_prefer_header(api):
    document = api.get("/openapi.json").json()
    for path in (SEND, "/api/email/send"):
        parameters = document["paths"][path]["post"]["parameters"]
        prefer = [p for p in parameters if p["in"] == "header" and p["name"].lower() == "prefer"]
        assert prefer and "respond-async" in prefer[0]["description"]
        assert "202" in document["paths"][path]["post"]["responses"]


# Executions, filtered ---------------------------------------------------------------------


def test_executions_are_filtered_by_status_recipient_provider_and_time(
    api, workspace, other_workspace, smtp_sink
):
    key = workspace["api_key"]
    sent = [send(workspace, f"r{i}@example.com") for i in range(2)]
    queued = send(workspace, "later@example.com", respond_async=True)
    send(other_workspace, "r0@example.com")  # never seen through the first key

    def ids(**params: str) -> list[str]:
        reply = api.get("/api/email/executions", key=key, params=params)
        assert reply.status_code == 200, reply.json()
        return [e["email_id"] for e in reply.json()["executions"]]

    newest_first = [queued["email_id"], sent[1]["email_id"], sent[0]["email_id"]]
    assert ids() == newest_first
    assert ids(status="sent") == newest_first[1:]
    assert ids(status="queued") == [queued["email_id"]]
    assert ids(recipient="R0@Example.com") == [sent[0]["email_id"]]
    assert ids(provider="smtp", limit="1", offset="1") == [sent[0]["email_id"]]
    assert ids(circuitExecutionId=queued["circuit_execution_id"]) == [queued["email_id"]]
    future = (clock.utcnow() + timedelta(hours=1)).isoformat()
    assert ids(createdSince=future) == [] and ids(createdBefore=future) == newest_first
    page = api.get("/api/email/executions", key=key, params={"status": "sent"}).json()
    assert page["total_count"] == 2


@pytest.mark.parametrize(
    "params",
    [{"status": "lost"}, {"provider": "pigeon"}, {"createdSince": "2026-01-01T00:00:00"}],
    ids=str,
)
def test_a_bad_executions_filter_is_a_clear_400(api, workspace, params):
    reply = api.get("/api/email/executions", key=workspace["api_key"], params=params)
    assert reply.status_code == 400
    assert reply.json()["error"]["code"] == "invalid_input"
