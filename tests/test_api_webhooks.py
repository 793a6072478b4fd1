"""Provider webhooks over HTTP, signed with real keys: SendGrid's ECDSA P-256 (made with
`cryptography`) and Resend's Svix HMAC (made with the `svix` package)."""

from __future__ import annotations

import base64
import json
import os
import random
import secrets
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from sqlalchemy import func, select
from svix.webhooks import Webhook

import tools
from persistence import EmailMetrics, ProviderEvent, all_workspaces
from tests.builders import ASSET, api_settings, approve, make_settings
from tests.fake_http import Reply
from tests.fake_providers import FakeSendGrid

SENDGRID = "/api/email/webhooks/sendgrid"
RESEND = "/api/email/webhooks/resend"
CLIENT = "550e8400-e29b-41d4-a716-446655440000"


class SendGridSigner:
    """SendGrid's side of the Event Webhook: an ECDSA P-256 key pair."""

    def __init__(self) -> None:
        self.private_key = ec.generate_private_key(ec.SECP256R1())
        der = self.private_key.public_key().public_bytes(
            Encoding.DER, PublicFormat.SubjectPublicKeyInfo
        )
        self.public_key = base64.b64encode(der).decode()

    def headers(self, body: bytes, at: datetime | None = None) -> dict[str, str]:
        timestamp = str(int((at or datetime.now(UTC)).timestamp()))
        signature = self.private_key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
        return {
            "Content-Type": "application/json",
            "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
            "X-Twilio-Email-Event-Webhook-Timestamp": timestamp,
        }


class ResendSigner:
    """Svix's side of Resend's webhooks: a whsec_ secret."""

    def __init__(self) -> None:
        self.secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
        self._svix = Webhook(self.secret)

    def headers(self, body: bytes, msg_id: str, at: datetime | None = None) -> dict[str, str]:
        at = at or datetime.now(UTC)
        return {
            "Content-Type": "application/json",
            "svix-id": msg_id,
            "svix-timestamp": str(int(at.timestamp())),
            "svix-signature": self._svix.sign(msg_id, at, body.decode()),
        }


@pytest.fixture(scope="module")
def sendgrid_signer() -> SendGridSigner:
    return SendGridSigner()


@pytest.fixture(scope="module")
def resend_signer() -> ResendSigner:
    return ResendSigner()


@pytest.fixture
def settings(sqlite_url, smtp_sink, tmp_path, sendgrid_fake, sendgrid_signer, resend_signer):
    return make_settings(
        sqlite_url,
        smtp_sink,
        tmp_path,
        **api_settings(sendgrid_fake),
        sendgrid_webhook_public_key=sendgrid_signer.public_key,
        resend_webhook_secret=resend_signer.secret,
    )


def send_via_api(api, workspace: dict, recipient: str = "bob@example.com") -> dict:
    body = {
        "circuit_execution_id": approve(workspace["workspace_id"]),
        "client_id": CLIENT,
        "recipient": recipient,
        "final_asset": ASSET,
    }
    reply = api.post("/api/circuits/agents/email/send", key=workspace["api_key"], json=body).json()
    assert reply["status"] == "sent", reply
    return reply


def sendgrid_events(sent: dict, fake, *kinds: dict[str, Any]) -> bytes:
    """A SendGrid event array for a message the fake accepted, custom_args merged in."""
    delivered = next(d for d in fake.delivered if d["email_id"] == sent["email_id"])
    custom_args = delivered["request"].body["custom_args"]
    base = {
        "email": sent["recipient"],
        "sg_message_id": f"{delivered['message_id']}.filter0001p1las1-1-5E3B-1",
        "smtp-id": "<abc@ismtpd-555>",
        **custom_args,
    }
    return json.dumps(
        [{**base, "sg_event_id": secrets.token_hex(8), **kind} for kind in kinds]
    ).encode()


def stored_events() -> int:
    with all_workspaces(), tools.get_runtime().sessions() as session:
        return session.scalar(select(func.count()).select_from(ProviderEvent)) or 0


NOW = int(datetime.now(UTC).timestamp())


def configure_on(database: str, request, settings, **overrides: Any) -> None:
    """The tools on the test's SQLite file, or on a PostgreSQL database of the test's own."""
    url = request.getfixturevalue("postgres_url") if database == "postgresql" else None
    values = {"database_url": url or settings.database_url, **overrides}
    tools.configure(settings.replace(**values))


# SendGrid --------------------------------------------------------------------------------


def test_sendgrid_events_are_stored_once_and_folded_into_the_metrics(
    api, workspace, sendgrid_fake, sendgrid_signer
):
    sent = send_via_api(api, workspace)
    body = sendgrid_events(
        sent,
        sendgrid_fake,
        {"event": "processed", "timestamp": NOW - 60},
        {"event": "delivered", "timestamp": NOW - 50, "response": "250 OK"},
        {"event": "open", "timestamp": NOW - 40, "useragent": "Mail"},
        {"event": "click", "timestamp": NOW - 30, "url": "https://acme.example/x"},
    )

    first = api.post(SENDGRID, content=body, headers=sendgrid_signer.headers(body))
    # SendGrid redelivers with a fresh signature and new sg_event_ids: still the same events.
    again_body = json.dumps(
        [{**e, "sg_event_id": secrets.token_hex(8)} for e in json.loads(body)]
    ).encode()
    again = api.post(SENDGRID, content=again_body, headers=sendgrid_signer.headers(again_body))

    assert first.status_code == 200, first.json()
    assert first.json() == {
        "success": True,
        "received": 4,
        "stored": 4,
        "duplicates": 0,
        "rejected": 0,
    }
    assert again.status_code == 200
    assert again.json()["stored"] == 0 and again.json()["duplicates"] == 4
    assert stored_events() == 4
    engagement = tools.get_email_status(sent["email_id"])["engagement"]
    assert engagement["delivered"] and engagement["opened"] and engagement["clicked"]
    assert not engagement["bounced"] and not engagement["complained"]
    assert engagement["opened_at"] == datetime.fromtimestamp(NOW - 40, UTC).isoformat()
    metrics = api.get(
        "/api/circuits/agents/email/metrics",
        key=workspace["api_key"],
        params={"circuitExecutionId": sent["circuit_execution_id"]},
    ).json()
    assert metrics["metrics"]["delivered"] is True and metrics["metrics"]["clicked"] is True


def test_a_hard_bounce_suppresses_and_the_next_send_is_blocked(
    api, workspace, sendgrid_fake, sendgrid_signer
):
    sent = send_via_api(api, workspace)
    body = sendgrid_events(
        sent,
        sendgrid_fake,
        {"event": "bounce", "type": "bounce", "status": "5.1.1", "timestamp": NOW},
    )

    reply = api.post(SENDGRID, content=body, headers=sendgrid_signer.headers(body))

    assert reply.status_code == 200 and reply.json()["stored"] == 1
    engagement = tools.get_email_status(sent["email_id"])["engagement"]
    assert engagement["bounced"] is True and engagement["bounce_type"] == "hard"
    assert tools.is_suppressed(workspace["workspace_id"], "bob@example.com")
    blocked = api.post(
        "/api/circuits/agents/email/send",
        key=workspace["api_key"],
        json={
            "circuit_execution_id": approve(workspace["workspace_id"]),
            "client_id": CLIENT,
            "recipient": "bob@example.com",
            "final_asset": ASSET,
        },
    )
    assert blocked.status_code == 403 and blocked.json()["error"]["code"] == "suppressed"
    assert len(sendgrid_fake.delivered) == 1


@pytest.mark.parametrize(
    "event,suppressed,flag",
    [
        ({"event": "bounce", "type": "blocked"}, False, "bounced"),
        ({"event": "spamreport"}, True, "complained"),
        ({"event": "unsubscribe"}, True, "unsubscribed"),
        ({"event": "group_unsubscribe", "asm_group_id": 1}, True, "unsubscribed"),
        ({"event": "deferred", "attempt": "5"}, False, None),
        ({"event": "dropped", "reason": "Bounced Address"}, False, None),
    ],
)
def test_what_each_sendgrid_event_does(
    api, workspace, sendgrid_fake, sendgrid_signer, event, suppressed, flag
):
    sent = send_via_api(api, workspace)
    body = sendgrid_events(sent, sendgrid_fake, {**event, "timestamp": NOW})

    reply = api.post(SENDGRID, content=body, headers=sendgrid_signer.headers(body))

    assert reply.status_code == 200 and reply.json()["stored"] == 1
    assert tools.is_suppressed(workspace["workspace_id"], "bob@example.com") is suppressed
    engagement = tools.get_email_status(sent["email_id"])["engagement"]
    flags = {
        name
        for name in ("delivered", "bounced", "opened", "clicked", "unsubscribed", "complained")
        if engagement[name]
    }
    assert flags == ({flag} if flag else set())
    if flag == "bounced":
        assert engagement["bounce_type"] == "soft"


def _tamper(signer: SendGridSigner, body: bytes) -> tuple[bytes, dict[str, str]]:
    headers = signer.headers(body)
    return body.replace(b"delivered", b"bounce"), headers


@pytest.mark.parametrize(
    "case",
    ["unsigned", "other_key", "tampered_body", "stale", "future", "garbage_signature"],
)
def test_a_sendgrid_request_that_is_not_signed_right_is_401_and_stores_nothing(
    api, workspace, sendgrid_fake, sendgrid_signer, case
):
    sent = send_via_api(api, workspace)
    body = sendgrid_events(sent, sendgrid_fake, {"event": "delivered", "timestamp": NOW})
    headers = sendgrid_signer.headers(body)
    if case == "unsigned":
        headers = {"Content-Type": "application/json"}
    elif case == "other_key":
        headers = SendGridSigner().headers(body)
    elif case == "tampered_body":
        body, headers = _tamper(sendgrid_signer, body)
    elif case == "stale":
        headers = sendgrid_signer.headers(body, datetime.now(UTC) - timedelta(minutes=6))
    elif case == "future":
        headers = sendgrid_signer.headers(body, datetime.now(UTC) + timedelta(minutes=6))
    else:
        headers["X-Twilio-Email-Event-Webhook-Signature"] = "not base64!"

    reply = api.post(SENDGRID, content=body, headers=headers)

    assert reply.status_code == 401
    assert reply.json()["error"]["code"] == "invalid_signature"
    assert stored_events() == 0
    assert tools.get_email_status(sent["email_id"])["engagement"]["delivered"] is False


@pytest.mark.parametrize("body", [b"not json", b'{"event": "delivered"}', b"[NaN]", b""])
def test_a_signed_body_that_is_not_an_event_array_is_400_and_stores_nothing(
    api, sendgrid_signer, runtime, body
):
    reply = api.post(SENDGRID, content=body, headers=sendgrid_signer.headers(body))

    assert reply.status_code == 400
    assert reply.json()["error"]["code"] == "invalid_input"
    assert stored_events() == 0


def test_unreadable_items_do_not_cost_the_rest_of_the_batch(
    api, workspace, sendgrid_fake, sendgrid_signer
):
    sent = send_via_api(api, workspace)
    good = json.loads(
        sendgrid_events(
            sent, sendgrid_fake, {"event": "bounce", "type": "bounce", "timestamp": NOW}
        )
    )
    body = json.dumps(
        [1, {"event": "open", "timestamp": "yesterday"}, {"timestamp": NOW}, *good]
    ).encode()

    reply = api.post(SENDGRID, content=body, headers=sendgrid_signer.headers(body))

    assert reply.status_code == 200
    assert reply.json() == {
        "success": True,
        "received": 4,
        "stored": 1,
        "duplicates": 0,
        "rejected": 3,
    }
    assert tools.is_suppressed(workspace["workspace_id"], "bob@example.com")


def test_an_event_claiming_another_workspace_is_never_counted_for_the_email(
    api, workspace, other_workspace, sendgrid_fake, sendgrid_signer
):
    sent = send_via_api(api, workspace)
    genuine = json.loads(sendgrid_events(sent, sendgrid_fake, {"event": "spamreport"}))[0]
    # Right email_id and provider message id, but it names another workspace.
    spoof = [{**genuine, "timestamp": NOW, "workspace_id": other_workspace["workspace_id"]}]
    body = json.dumps(spoof).encode()

    reply = api.post(SENDGRID, content=body, headers=sendgrid_signer.headers(body))
    for ws in (workspace, other_workspace):  # nor later, when waiting events are folded
        api.post(
            "/api/circuits/agents/email/metrics",
            key=ws["api_key"],
            params={"action": "collect-metrics"},
        )
    tools.fold_waiting_events()

    assert reply.status_code == 200 and reply.json()["stored"] == 1
    assert tools.get_email_status(sent["email_id"])["engagement"]["complained"] is False
    for ws in (workspace, other_workspace):
        assert tools.is_suppressed(ws["workspace_id"], "bob@example.com") is False


def test_an_event_that_overtook_its_send_is_folded_by_collect_metrics(
    api, workspace, sendgrid_fake, sendgrid_signer
):
    # The event names only the provider's message id, and arrives before the send recorded it.
    early = [{"event": "delivered", "timestamp": NOW, "sg_message_id": "early123.filter1"}]
    body = json.dumps(early).encode()
    stored = api.post(SENDGRID, content=body, headers=sendgrid_signer.headers(body))
    assert stored.json()["stored"] == 1
    sendgrid_fake.script.append(Reply(202, None, {"X-Message-Id": "early123"}))
    sent = send_via_api(api, workspace)
    assert tools.get_email_status(sent["email_id"])["engagement"]["delivered"] is False

    collected = api.post(
        "/api/circuits/agents/email/metrics",
        key=workspace["api_key"],
        params={"action": "collect-metrics"},
    )

    assert collected.status_code == 200 and collected.json()["metrics_collected"] == 1
    assert tools.get_email_status(sent["email_id"])["engagement"]["delivered"] is True
    again = api.post(
        "/api/circuits/agents/email/metrics",
        key=workspace["api_key"],
        params={"action": "collect-metrics"},
    )
    assert again.json()["metrics_collected"] == 0


def test_an_event_for_an_address_the_email_did_not_go_to_suppresses_no_one(
    api, workspace, sendgrid_fake, sendgrid_signer
):
    sent = send_via_api(api, workspace)
    body = sendgrid_events(
        sent, sendgrid_fake, {"event": "spamreport", "timestamp": NOW, "email": "x@stranger.org"}
    )

    api.post(SENDGRID, content=body, headers=sendgrid_signer.headers(body))

    assert tools.get_email_status(sent["email_id"])["engagement"]["complained"] is True
    for address in ("x@stranger.org", "bob@example.com"):
        assert tools.is_suppressed(workspace["workspace_id"], address) is False


def _store_early_bounce(api, sendgrid_signer, message_id: str) -> None:
    early = [
        {
            "event": "bounce",
            "type": "bounce",
            "timestamp": NOW,
            "email": "bob@example.com",
            "sg_message_id": f"{message_id}.filter1",
        }
    ]
    body = json.dumps(early).encode()
    assert (
        api.post(SENDGRID, content=body, headers=sendgrid_signer.headers(body)).status_code == 200
    )


def test_an_event_waiting_longer_than_seven_days_is_no_longer_matched(
    api, workspace, sendgrid_fake, sendgrid_signer
):
    _store_early_bounce(api, sendgrid_signer, "old789")
    with all_workspaces(), tools.get_runtime().sessions() as session, session.begin():
        event = session.scalars(select(ProviderEvent)).one()
        event.received_at = datetime.now(UTC) - timedelta(days=8)
    sendgrid_fake.script.append(Reply(202, None, {"X-Message-Id": "old789"}))
    sent = send_via_api(api, workspace)

    assert tools.fold_waiting_events() == 0
    assert tools.get_email_status(sent["email_id"])["engagement"]["bounced"] is False


def test_main_worker_folds_waiting_events(
    api, workspace, settings, smtp_sink, sendgrid_fake, sendgrid_signer, monkeypatch
):
    import main

    _store_early_bounce(api, sendgrid_signer, "work321")
    sendgrid_fake.script.append(Reply(202, None, {"X-Message-Id": "work321"}))
    sent = send_via_api(api, workspace)
    tools.shutdown()
    for name in [n for n in os.environ if n.startswith(("SMTP_", "EMAIL_", "SENDGRID_"))]:
        monkeypatch.delenv(name)
    for name, value in {
        "EMAIL_LOG_DATABASE_URL": settings.database_url,
        "EMAIL_SIGNING_SECRET": settings.signing_secret,
        "SMTP_SERVER": "127.0.0.1",
        "SMTP_PORT": str(smtp_sink.port),
        "SMTP_USE_TLS": "false",
    }.items():
        monkeypatch.setenv(name, value)

    assert main.main(["worker", "--once"]) == 0

    tools.configure(settings)
    assert tools.get_email_status(sent["email_id"])["engagement"]["bounced"] is True
    assert tools.is_suppressed(workspace["workspace_id"], "bob@example.com")


def test_the_worker_pass_folds_an_event_that_overtook_its_send(
    api, workspace, sendgrid_fake, sendgrid_signer
):
    early = [
        {
            "event": "bounce",
            "type": "bounce",
            "timestamp": NOW,
            "email": "bob@example.com",
            "sg_message_id": "early456.filter1",
        }
    ]
    body = json.dumps(early).encode()
    api.post(SENDGRID, content=body, headers=sendgrid_signer.headers(body))
    sendgrid_fake.script.append(Reply(202, None, {"X-Message-Id": "early456"}))
    sent = send_via_api(api, workspace)

    assert tools.fold_waiting_events() == 1

    assert tools.get_email_status(sent["email_id"])["engagement"]["bounced"] is True
    assert tools.is_suppressed(workspace["workspace_id"], "bob@example.com")
    assert tools.fold_waiting_events() == 0


# Resend ----------------------------------------------------------------------------------


@pytest.fixture
def resend_only(settings, resend_fake):
    """The runtime with Resend as the only provider (its webhook secret still set)."""
    values = {**api_settings(resend=resend_fake), "sendgrid_api_key": None}
    return tools.configure(settings.replace(**values))


def resend_event(sent: dict, resend_fake, kind: str, **data: Any) -> bytes:
    delivered = next(d for d in resend_fake.delivered if d["email_id"] == sent["email_id"])
    tags = {t["name"]: t["value"] for t in delivered["request"].body["tags"]}
    return json.dumps(
        {
            "type": kind,
            "created_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            "data": {
                "email_id": delivered["message_id"],
                "created_at": "2026-11-21T10:00:00.000Z",
                "from": "news@acme.example",
                "to": [sent["recipient"]],
                "subject": ASSET["subject"],
                "tags": tags,
                **data,
            },
        }
    ).encode()


def test_resend_events_are_verified_stored_once_and_folded(
    api, workspace, resend_only, resend_fake, resend_signer
):
    sent = send_via_api(api, workspace)
    body = resend_event(sent, resend_fake, "email.delivered")
    msg_id = "msg_" + secrets.token_hex(12)

    first = api.post(RESEND, content=body, headers=resend_signer.headers(body, msg_id))
    # Svix redelivers with the same svix-id (and a new timestamp and signature).
    again = api.post(RESEND, content=body, headers=resend_signer.headers(body, msg_id))

    assert first.status_code == 200 and first.json()["stored"] == 1
    assert again.status_code == 200 and again.json()["duplicates"] == 1
    assert stored_events() == 1
    assert tools.get_email_status(sent["email_id"])["engagement"]["delivered"] is True


@pytest.mark.parametrize(
    "bounce,suppressed", [("Permanent", True), ("Transient", False), ("Undetermined", False)]
)
def test_a_resend_permanent_bounce_suppresses(
    api, workspace, resend_only, resend_fake, resend_signer, bounce, suppressed
):
    sent = send_via_api(api, workspace)
    body = resend_event(
        sent,
        resend_fake,
        "email.bounced",
        bounce={"type": bounce, "subType": "General", "message": "no such user"},
    )

    reply = api.post(RESEND, content=body, headers=resend_signer.headers(body, "msg_b1"))

    assert reply.status_code == 200
    engagement = tools.get_email_status(sent["email_id"])["engagement"]
    assert engagement["bounced"] is True
    assert engagement["bounce_type"] == ("hard" if suppressed else "soft")
    assert tools.is_suppressed(workspace["workspace_id"], "bob@example.com") is suppressed


def test_a_resend_event_of_an_email_with_copies_is_counted_but_suppresses_no_one(
    api, workspace, resend_only, resend_fake, resend_signer
):
    # Resend does not say which recipient bounced: with copies, it could be any of them.
    body = {
        "circuit_execution_id": approve(workspace["workspace_id"]),
        "client_id": CLIENT,
        "recipient": "bob@example.com",
        "cc": ["carol@example.com"],
        "final_asset": ASSET,
    }
    sent = api.post("/api/circuits/agents/email/send", key=workspace["api_key"], json=body).json()
    event = resend_event(
        sent, resend_fake, "email.bounced", bounce={"type": "Permanent", "subType": "General"}
    )

    api.post(RESEND, content=event, headers=resend_signer.headers(event, "msg_cc"))

    assert tools.get_email_status(sent["email_id"])["engagement"]["bounced"] is True
    for address in ("bob@example.com", "carol@example.com"):
        assert tools.is_suppressed(workspace["workspace_id"], address) is False


def test_a_resend_complaint_suppresses(api, workspace, resend_only, resend_fake, resend_signer):
    sent = send_via_api(api, workspace)
    body = resend_event(sent, resend_fake, "email.complained")

    api.post(RESEND, content=body, headers=resend_signer.headers(body, "msg_c1"))

    assert tools.is_suppressed(workspace["workspace_id"], "bob@example.com") is True


@pytest.mark.parametrize(
    "case", ["unsigned", "other_secret", "tampered_body", "stale", "malformed_signature"]
)
def test_a_resend_request_that_is_not_signed_right_is_401_and_stores_nothing(
    api, workspace, resend_only, resend_fake, resend_signer, case
):
    sent = send_via_api(api, workspace)
    body = resend_event(sent, resend_fake, "email.complained")
    headers = resend_signer.headers(body, "msg_x")
    if case == "unsigned":
        headers = {"Content-Type": "application/json"}
    elif case == "other_secret":
        headers = ResendSigner().headers(body, "msg_x")
    elif case == "tampered_body":
        body = body.replace(b"complained", b"delivered")
    elif case == "stale":
        headers = resend_signer.headers(body, "msg_x", datetime.now(UTC) - timedelta(minutes=6))
    else:
        headers["svix-signature"] = "garbage"

    reply = api.post(RESEND, content=body, headers=headers)

    assert reply.status_code == 401
    assert reply.json()["error"]["code"] == "invalid_signature"
    assert stored_events() == 0
    assert tools.is_suppressed(workspace["workspace_id"], "bob@example.com") is False


def test_webhooks_without_their_key_configured_are_503(api, settings):
    tools.configure(settings.replace(sendgrid_webhook_public_key=None, resend_webhook_secret=None))

    for path in (SENDGRID, RESEND):
        reply = api.post(path, content=b"[]", headers={"Content-Type": "application/json"})
        assert reply.status_code == 503
        assert reply.json()["error"]["code"] == "webhook_not_configured"
    assert stored_events() == 0


def test_a_malformed_webhook_key_is_a_configuration_error(settings):
    from settings import SettingsError

    with pytest.raises(SettingsError, match="SENDGRID_WEBHOOK_PUBLIC_KEY"):
        tools.configure(settings.replace(sendgrid_webhook_public_key="not-a-key"))
    tools.shutdown()


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_concurrent_redeliveries_store_and_count_an_event_once(
    database, request, settings, smtp_sink, sendgrid_fake, sendgrid_signer
):
    configure_on(database, request, settings)
    try:
        workspace = tools.create_workspace("W", "w@w.example", "1 Road, Town")
        execution_id = approve(workspace["workspace_id"])
        sent = tools.send_email(
            workspace["workspace_id"], CLIENT, execution_id, "bob@example.com", ASSET
        )
        body = sendgrid_events(
            sent,
            sendgrid_fake,
            {"event": "spamreport", "timestamp": NOW},
            {"event": "open", "timestamp": NOW},
        )
        headers = sendgrid_signer.headers(body)

        with ThreadPoolExecutor(8) as pool:
            results = list(
                pool.map(lambda _: tools.receive_webhook("sendgrid", headers, body), range(16))
            )

        assert all(r["success"] for r in results), results
        assert sum(r["stored"] for r in results) == 2
        assert sum(r["duplicates"] for r in results) == 30
        assert stored_events() == 2
        engagement = tools.get_email_status(sent["email_id"])["engagement"]
        assert engagement["complained"] and engagement["opened"]
        assert tools.is_suppressed(workspace["workspace_id"], "bob@example.com")
    finally:
        tools.shutdown()


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_concurrent_overlapping_batches_neither_deadlock_nor_lose_the_hard_bounce(
    database, request, settings, smtp_sink, sendgrid_fake, sendgrid_signer
):
    configure_on(database, request, settings)
    try:
        workspace = tools.create_workspace("W", "w@w.example", "1 Road, Town")
        sends = [
            tools.send_email(
                workspace["workspace_id"],
                CLIENT,
                approve(workspace["workspace_id"]),
                address,
                ASSET,
            )
            for address in ("bob@example.com", "carol@example.com")
        ]
        shared = [
            {"event": "bounce", "type": "bounce", "timestamp": NOW},
            {"event": "delivered", "timestamp": NOW - 5},
            {"event": "open", "timestamp": NOW - 4},
            {"event": "click", "timestamp": NOW - 3, "url": "https://acme.example/a"},
            {"event": "spamreport", "timestamp": NOW - 2},
        ]
        batches = []
        for n in range(12):
            own = [
                {"event": "bounce", "type": "blocked", "timestamp": NOW - 100 - n},
                {"event": "open", "timestamp": NOW - 200 - n},
            ]
            # Every batch has events of both emails, each in another order.
            events = [
                event
                for sent in sends
                for event in json.loads(sendgrid_events(sent, sendgrid_fake, *shared, *own))
            ]
            random.Random(n).shuffle(events)
            body = json.dumps(events).encode()
            batches.append((sendgrid_signer.headers(body), body))

        with ThreadPoolExecutor(12) as pool:
            results = list(
                pool.map(lambda batch: tools.receive_webhook("sendgrid", *batch), batches)
            )

        assert all(r["success"] for r in results), results
        expected = 2 * (len(shared) + 24)
        assert sum(r["stored"] for r in results) == expected
        assert stored_events() == expected
        for sent in sends:
            engagement = tools.get_email_status(sent["email_id"])["engagement"]
            assert engagement["bounce_type"] == "hard"
            assert engagement["opened_at"] == datetime.fromtimestamp(NOW - 211, UTC).isoformat()
            assert tools.is_suppressed(workspace["workspace_id"], sent["recipient"])
    finally:
        tools.shutdown()


class EagerSendGrid(FakeSendGrid):
    """A SendGrid whose "delivered" event reaches the service before its own 202 answer."""

    def __init__(self, signer: SendGridSigner) -> None:
        super().__init__()
        self.signer = signer
        self.webhook_results: list[dict] = []

    def handle(self, received):
        answer = super().handle(received)
        if answer.status == 202:
            event = {
                "event": "delivered",
                "timestamp": NOW,
                "email": received.body["personalizations"][0]["to"][0]["email"],
                "sg_message_id": f"{answer.headers['X-Message-Id']}.filter1",
                **received.body["custom_args"],
            }
            body = json.dumps([event]).encode()
            result = tools.receive_webhook("sendgrid", self.signer.headers(body), body)
            self.webhook_results.append(result)
        return answer


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_an_event_that_arrives_before_the_send_is_recorded_is_kept_with_the_send(
    database, request, settings, sendgrid_signer
):
    eager = EagerSendGrid(sendgrid_signer).start()
    configure_on(
        database, request, settings, sendgrid_api_key=eager.api_key, sendgrid_api_base_url=eager.url
    )
    try:
        workspace = tools.create_workspace("W", "w@w.example", "1 Road, Town")
        sent = tools.send_email(
            workspace["workspace_id"], CLIENT, approve(workspace["workspace_id"]), "b@x.org", ASSET
        )

        assert eager.webhook_results[0]["stored"] == 1
        assert sent["status"] == "sent", sent
        status = tools.get_email_status(sent["email_id"])
        assert status["status"] == "sent" and status["provider"] == "sendgrid"
        assert status["delivery_attempts"] == 1
        assert status["engagement"]["delivered"] is True
        with all_workspaces(), tools.get_runtime().sessions() as session:
            metrics = session.scalars(
                select(EmailMetrics).where(EmailMetrics.execution_id == sent["email_id"])
            ).one()
        assert metrics.provider == "sendgrid"
        assert metrics.provider_message_id == status["provider_message_id"]
    finally:
        tools.shutdown()
        eager.stop()


def test_complaints_over_the_hard_rate_pause_new_sends_until_an_operator_lifts_it(
    api, settings, workspace, sendgrid_fake, sendgrid_signer
):
    tools.configure(settings.replace(reputation_min_sends=4))
    sent = [send_via_api(api, workspace, f"r{n}@example.com") for n in range(4)]
    body = sendgrid_events(sent[0], sendgrid_fake, {"event": "spamreport", "timestamp": NOW})

    assert (
        api.post(SENDGRID, content=body, headers=sendgrid_signer.headers(body)).status_code == 200
    )

    key = workspace["api_key"]
    state = api.get("/api/email/reputation", key=key).json()
    assert state["complaint_rate"] == 0.25 and state["sending_paused"] is True
    assert {(s["kind"], s["level"]) for s in state["signals"]} == {
        ("complaint_rate", "hard"),
        ("complaint_rate", "warn"),
    }
    send_body = {
        "circuit_execution_id": approve(workspace["workspace_id"]),
        "client_id": CLIENT,
        "recipient": "new@example.com",
        "final_asset": ASSET,
    }
    refused = api.post("/api/circuits/agents/email/send", key=key, json=send_body)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "complaint_rate_exceeded"
    assert len(sendgrid_fake.delivered) == 4

    lifted = api.post("/api/email/reputation/lift", key=key, json={"note": "list cleaned"})
    again = api.post("/api/email/reputation/lift", key=key, json={"note": "twice"})
    allowed = api.post("/api/circuits/agents/email/send", key=key, json=send_body)

    assert lifted.status_code == 200 and lifted.json()["sending_paused"] is False
    assert lifted.json()["lifted_signals"] == 2
    assert again.status_code == 404
    assert allowed.status_code == 200 and allowed.json()["status"] == "sent"
