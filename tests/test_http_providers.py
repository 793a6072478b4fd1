"""SendGrid and Resend providers against local fakes that speak their real wire formats."""

from __future__ import annotations

import base64
import dataclasses
import socket
import time
from typing import Any

import pytest

import tools
from tests.builders import ASSET, api_settings, make_settings, outgoing_email, send
from tests.fake_http import Drop, Reply, Slow
from tests.fake_providers import FakeResend, FakeSendGrid, resend_body, sendgrid_body
from tests.observers import attempt_rows, committed_statuses
from tools.providers.base import (
    AmbiguousDeliveryError,
    PermanentProviderError,
    ProviderError,
    RetryableProviderError,
)
from tools.providers.resend import ResendProvider
from tools.providers.sendgrid import SendGridProvider


@pytest.fixture
def attachments_dir(tmp_path):
    folder = tmp_path / "files"
    folder.mkdir()
    (folder / "terms.pdf").write_bytes(b"%PDF-1.4 terms")
    return folder


def _configure(sqlite_url, smtp_sink, tmp_path, **overrides: Any) -> dict[str, Any]:
    # No SMTP_SERVER: the API providers are the whole chain (the dev server is not added).
    tools.configure(make_settings(sqlite_url, smtp_sink, tmp_path, smtp_server=None, **overrides))
    return tools.create_workspace(
        "Acme", "news@acme.example", "1 Main Street, Springfield", sender_name="Acme News"
    )


def _attempts(email_id: str) -> list[tuple[str, str, int | None]]:
    return [(a.provider, a.outcome, a.status_code) for a in attempt_rows(email_id)]


def test_sendgrid_request_as_received(
    sendgrid_fake, smtp_sink, sqlite_url, tmp_path, attachments_dir
):
    workspace = _configure(
        sqlite_url,
        smtp_sink,
        tmp_path,
        attachments_dir=attachments_dir,
        **api_settings(sendgrid_fake),
    )
    try:
        result = send(
            workspace, cc=["carol@example.com"], bcc=["dave@example.com"], attachments=["terms.pdf"]
        )
        assert result["status"] == "sent", result
        (request,) = sendgrid_fake.requests
        assert request.path == "/v3/mail/send"
        assert request.headers["authorization"] == "Bearer SG.test-key"
        assert request.headers["content-type"] == "application/json"
        body = request.body
        assert body["personalizations"] == [
            {
                "to": [{"email": "bob@example.com"}],
                "cc": [{"email": "carol@example.com"}],
                "bcc": [{"email": "dave@example.com"}],
            }
        ]
        assert body["from"] == {"email": "news@acme.example", "name": "Acme News"}
        assert body["subject"] == ASSET["subject"]
        assert [c["type"] for c in body["content"]] == ["text/plain", "text/html"]
        assert "We have an important update for you." in body["content"][0]["value"]
        assert "<h1>Hello!</h1>" in body["content"][1]["value"]
        assert "1 Main Street, Springfield" in body["content"][1]["value"]  # the footer
        assert body["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert body["headers"]["List-Unsubscribe"].startswith("<https://mail.example.test/")
        assert body["categories"] == ["account-update"]
        assert body["custom_args"] == {
            "email_id": result["email_id"],
            "workspace_id": workspace["workspace_id"],
        }
        (attachment,) = body["attachments"]
        assert attachment["filename"] == "terms.pdf"
        assert base64.b64decode(attachment["content"]) == b"%PDF-1.4 terms"
        assert result["execution_result"]["provider"] == "sendgrid"
        delivered = sendgrid_fake.delivered[0]
        assert result["execution_result"]["provider_message_id"] == delivered["message_id"]
        assert delivered["recipients"] == [
            "bob@example.com",
            "carol@example.com",
            "dave@example.com",
        ]
        assert _attempts(result["email_id"]) == [("sendgrid", "sent", 202)]
        assert smtp_sink.messages == []
    finally:
        tools.shutdown()


def test_resend_request_as_received(resend_fake, smtp_sink, sqlite_url, tmp_path):
    workspace = _configure(sqlite_url, smtp_sink, tmp_path, **api_settings(resend=resend_fake))
    try:
        result = send(workspace, cc=["carol@example.com"], bcc=["dave@example.com"])
        assert result["status"] == "sent", result
        (request,) = resend_fake.requests
        assert request.path == "/emails"
        assert request.headers["authorization"] == "Bearer re_test_key"
        assert request.headers["idempotency-key"] == f"{result['email_id']}.0"
        body = request.body
        assert body["from"] == "Acme News <news@acme.example>"
        assert body["to"] == ["bob@example.com"]
        assert body["cc"] == ["carol@example.com"] and body["bcc"] == ["dave@example.com"]
        assert body["subject"] == ASSET["subject"]
        assert "<h1>Hello!</h1>" in body["html"] and "important update" in body["text"]
        assert body["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert body["tags"] == [
            {"name": "email_id", "value": result["email_id"]},
            {"name": "workspace_id", "value": workspace["workspace_id"]},
            {"name": "account-update", "value": "true"},
        ]
        assert (
            result["execution_result"]["provider_message_id"]
            == resend_fake.delivered[0]["message_id"]
        )
        assert _attempts(result["email_id"]) == [("resend", "sent", 200)]
    finally:
        tools.shutdown()


def test_a_tag_no_provider_accepts_is_refused_before_anything_is_sent(
    sendgrid_fake, smtp_sink, sqlite_url, tmp_path
):
    workspace = _configure(sqlite_url, smtp_sink, tmp_path, **api_settings(sendgrid_fake))
    try:
        result = send(workspace, final_asset={**ASSET, "tags": ["two words"]}, cx06_output=ASSET)
        assert result["status"] == "blocked"
        assert result["error"]["code"] == "invalid_input"
        assert sendgrid_fake.requests == []
    finally:
        tools.shutdown()


# Failure classes, provider by provider --------------------------------------------------

EMAIL = outgoing_email()

SG_ERROR = sendgrid_body("bad")
RS_RATE = resend_body(429, "rate_limit_exceeded", "Too many requests")


def _fake_and_provider(kind: str, timeout: float = 2.0):
    fake = (FakeSendGrid() if kind == "sendgrid" else FakeResend()).start()
    cls = SendGridProvider if kind == "sendgrid" else ResendProvider
    return fake, cls(fake.api_key, fake.url, timeout=timeout)


@pytest.mark.parametrize("kind", ["sendgrid", "resend"])
def test_the_row_says_sending_before_the_request_goes(
    kind, sendgrid_fake, resend_fake, smtp_sink, sqlite_url, tmp_path
):
    fake = sendgrid_fake if kind == "sendgrid" else resend_fake
    fakes = {"sendgrid": sendgrid_fake} if kind == "sendgrid" else {"resend": resend_fake}
    runtime = tools.configure(
        make_settings(sqlite_url, smtp_sink, tmp_path, **api_settings(**fakes))
    )
    try:
        seen: list[list[str]] = []
        fake.on_request = lambda: seen.append(committed_statuses(runtime))
        workspace = tools.create_workspace("Acme", "news@acme.example", "1 Main Street")
        assert send(workspace)["status"] == "sent"
    finally:
        tools.shutdown()
    assert seen == [["sending"]]  # durable before the provider could deliver anything


@pytest.mark.parametrize("kind", ["sendgrid", "resend"])
@pytest.mark.parametrize(
    ("step", "expected", "provider_fault"),
    [
        (Reply(400, SG_ERROR), PermanentProviderError, False),
        (
            Reply(422, resend_body(422, "invalid_parameter")),
            PermanentProviderError,
            False,
        ),
        (Reply(401, SG_ERROR), PermanentProviderError, True),
        (Reply(403, SG_ERROR), PermanentProviderError, True),
        (Reply(429, SG_ERROR), RetryableProviderError, True),
        (Reply(500, SG_ERROR), RetryableProviderError, True),
        (Reply(502), RetryableProviderError, True),
        (Reply(503, SG_ERROR), RetryableProviderError, True),
        (Reply(504), RetryableProviderError, True),
        (Drop(accept=True), AmbiguousDeliveryError, True),
        (Slow(1.0), AmbiguousDeliveryError, True),
    ],
    ids=lambda v: getattr(v, "__name__", None) or repr(v)[:30],
)
def test_each_failure_class(kind, step, expected, provider_fault):
    fake, provider = _fake_and_provider(kind, timeout=0.3)
    try:
        fake.script.append(step)
        with pytest.raises(ProviderError) as caught:
            provider.send(EMAIL)
        assert type(caught.value) is expected
        assert caught.value.provider_fault is provider_fault
        if isinstance(step, Reply):
            assert caught.value.status_code == step.status
        assert "test-key" not in str(caught.value) and "test_key" not in str(caught.value)
    finally:
        provider.close()
        fake.stop()


@pytest.mark.parametrize("kind", ["sendgrid", "resend"])
def test_refused_connection_is_retryable_and_wrong_key_is_the_providers_fault(kind):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    cls = SendGridProvider if kind == "sendgrid" else ResendProvider
    with pytest.raises(RetryableProviderError):
        cls("key", closed, timeout=1.0).send(EMAIL)

    fake = (FakeSendGrid() if kind == "sendgrid" else FakeResend()).start()
    try:
        with pytest.raises(PermanentProviderError) as caught:
            cls("wrong-key", fake.url, timeout=1.0).send(EMAIL)
        assert caught.value.status_code in (401, 403) and caught.value.provider_fault
        assert fake.delivered == []
    finally:
        fake.stop()


def test_sendgrid_rate_limit_reset_and_resend_retry_after_become_waits():
    fake, provider = _fake_and_provider("sendgrid")
    try:
        reset = int(time.time()) + 30
        fake.script.append(Reply(429, SG_ERROR, {"X-RateLimit-Reset": str(reset)}))
        with pytest.raises(RetryableProviderError) as caught:
            provider.send(EMAIL)
        assert 28 <= caught.value.retry_after <= 31
    finally:
        fake.stop()
    fake, provider = _fake_and_provider("resend")
    try:
        fake.script.append(Reply(429, RS_RATE, {"retry-after": "7"}))
        with pytest.raises(RetryableProviderError) as caught:
            provider.send(EMAIL)
        assert caught.value.retry_after == 7
    finally:
        fake.stop()


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("concurrent_idempotent_requests", RetryableProviderError),
        ("invalid_idempotent_request", AmbiguousDeliveryError),
    ],
)
def test_resend_409_answers_are_told_apart(name, expected):
    fake, provider = _fake_and_provider("resend")
    try:
        fake.script.append(Reply(409, resend_body(409, name)))
        with pytest.raises(ProviderError) as caught:
            provider.send(EMAIL)
        assert type(caught.value) is expected
    finally:
        fake.stop()


def test_resend_quota_429_is_not_worth_retrying():
    fake, provider = _fake_and_provider("resend")
    try:
        fake.script.append(Reply(429, resend_body(429, "daily_quota_exceeded")))
        with pytest.raises(PermanentProviderError) as caught:
            provider.send(EMAIL)
        assert caught.value.provider_fault
    finally:
        fake.stop()


def test_resend_same_key_same_body_returns_the_first_id_without_sending_again():
    fake, provider = _fake_and_provider("resend")
    try:
        first = provider.send(EMAIL)
        again = provider.send(EMAIL)
        assert first.message_id == again.message_id
        assert len(fake.delivered) == 1
        changed = dataclasses.replace(EMAIL, subject="Changed")
        with pytest.raises(AmbiguousDeliveryError):
            provider.send(changed)
        assert len(fake.delivered) == 1
    finally:
        fake.stop()


# Backoff, measured ------------------------------------------------------------------------


def test_backoff_doubles_from_the_initial_delay(sendgrid_fake, smtp_sink, sqlite_url, tmp_path):
    workspace = _configure(
        sqlite_url, smtp_sink, tmp_path, retry_initial_delay=0.1, **api_settings(sendgrid_fake)
    )
    try:
        sendgrid_fake.script.extend([Reply(503, SG_ERROR), Reply(503, SG_ERROR)])
        result = send(workspace)
        assert result["status"] == "sent", result
        first, second, third = (r.at for r in sendgrid_fake.requests)
        assert 0.1 <= second - first < 0.5
        assert 0.2 <= third - second < 0.7
        assert _attempts(result["email_id"]) == [
            ("sendgrid", "transient_error", 503),
            ("sendgrid", "transient_error", 503),
            ("sendgrid", "sent", 202),
        ]
    finally:
        tools.shutdown()


def test_retry_after_is_honoured_up_to_the_cap(resend_fake, smtp_sink, sqlite_url, tmp_path):
    workspace = _configure(
        sqlite_url,
        smtp_sink,
        tmp_path,
        retry_initial_delay=0.01,
        retry_max_delay=0.5,
        **api_settings(resend=resend_fake),
    )
    try:
        resend_fake.script.extend(
            [
                Reply(429, RS_RATE, {"retry-after": "0.3"}),  # longer than the backoff: waited
                Reply(429, RS_RATE, {"retry-after": "3600"}),  # longer than the cap: capped
            ]
        )
        result = send(workspace)
        assert result["status"] == "sent", result
        first, second, third = (r.at for r in resend_fake.requests)
        assert 0.3 <= second - first < 0.45
        assert 0.5 <= third - second < 0.8
    finally:
        tools.shutdown()
