"""Local fakes of SendGrid v3 Mail Send and Resend `POST /emails`, in their real wire formats.

Validation follows the rules in shared/notes/email_providers_and_anchors.md section (b):
SendGrid's required fields, text/plain before text/html, at most 10 categories, string
custom_args, reserved headers, one appearance per address; Resend's required fields, tag
syntax, `to` of at most 50, and its Idempotency-Key semantics (same key and body: the first
id, nothing sent again; another body: 409 invalid_idempotent_request; first still in flight:
409 concurrent_idempotent_requests).
"""

from __future__ import annotations

import re
import threading
import uuid
from typing import Any

from tests.fake_http import Answer, FakeAPI, Received, Reply

SENDGRID_RESERVED_HEADERS = {
    "x-sg-id",
    "x-sg-eid",
    "received",
    "dkim-signature",
    "content-type",
    "content-transfer-encoding",
    "to",
    "from",
    "subject",
    "reply-to",
    "cc",
    "bcc",
}


def sendgrid_body(message: str, field: str | None = None) -> dict[str, Any]:
    """SendGrid's error body (400, 401, 403, 413, 429, 500 all use it)."""
    return {"errors": [{"message": message, "field": field, "help": None}]}


def sendgrid_reply(
    status: int, message: str = "error", headers: dict[str, str] | None = None
) -> Reply:
    """A scripted SendGrid error answer."""
    return Reply(status, sendgrid_body(message), headers or {})


def _sendgrid_error(status: int, message: str, field: str | None = None) -> Answer:
    return Answer(status, sendgrid_body(message, field))


class FakeSendGrid(FakeAPI):
    def __init__(self, api_key: str = "SG.test-key") -> None:
        super().__init__()
        self.api_key = api_key

    def handle(self, received: Received) -> Answer:
        if received.path != "/v3/mail/send":
            return _sendgrid_error(404, "not found")
        if received.headers.get("authorization") != f"Bearer {self.api_key}":
            return _sendgrid_error(
                401, "The provided authorization grant is invalid, expired, or revoked"
            )
        if not received.headers.get("content-type", "").startswith("application/json"):
            return _sendgrid_error(415, "Content-Type should be application/json.")
        problem = self.validate(received.body)
        if problem is not None:
            return _sendgrid_error(400, problem[1], problem[0])
        message_id = uuid.uuid4().hex[:22]
        body = received.body
        self.accept(
            received,
            message_id=message_id,
            email_id=body.get("custom_args", {}).get("email_id"),
            recipients=[
                a["email"]
                for p in body["personalizations"]
                for kind in ("to", "cc", "bcc")
                for a in p.get(kind, [])
            ],
        )
        return Answer(202, None, {"X-Message-Id": message_id})

    @staticmethod
    def validate(body: Any) -> tuple[str | None, str] | None:
        """(field, message) of the first rule the request breaks, as SendGrid reports it."""
        if not isinstance(body, dict):
            return None, "Bad Request"
        for name in ("personalizations", "from", "content"):
            if name not in body:
                return name, f"The {name} field is required."
        personalizations = body["personalizations"]
        if not isinstance(personalizations, list) or not 1 <= len(personalizations) <= 1000:
            return "personalizations", "personalizations must have 1 to 1000 items"
        seen: set[str] = set()
        for i, p in enumerate(personalizations):
            if not p.get("to"):
                return f"personalizations.{i}.to", "The to array is required."
            if "subject" not in body and "subject" not in p:
                return "subject", "The subject is required."
            for kind in ("to", "cc", "bcc"):
                if kind in p and not p[kind]:
                    return f"personalizations.{i}.{kind}", f"The {kind} array must not be empty."
                for address in p.get(kind, []):
                    key = str(address.get("email", "")).lower()
                    if not key or "@" not in key:
                        return f"personalizations.{i}.{kind}", "Invalid email address."
                    if key in seen:
                        return (
                            f"personalizations.{i}.{kind}",
                            "Each email address in the personalization block should be unique "
                            "between to, cc, and bcc.",
                        )
                    seen.add(key)
        if len(seen) > 1000:
            return "personalizations", "at most 1000 recipients"
        if not isinstance(body["from"], dict) or not body["from"].get("email"):
            return "from.email", "The from email does not contain a valid address."
        content = body["content"]
        if not isinstance(content, list) or not content:
            return "content", "The content value must be an array of at least one item."
        types = [c.get("type") for c in content]
        if any(not c.get("value") for c in content):
            return "content.value", "The content value must be a string at least one character."
        text_first = "text/plain" not in types or types.index("text/plain") == 0
        if "text/html" in types and not text_first:
            return "content", "The text/plain content type must be first."
        categories = body.get("categories", [])
        if len(categories) > 10:
            return "categories", "Too many categories; a maximum of 10 is allowed."
        if any(not isinstance(c, str) or len(c) > 255 for c in categories):
            return "categories", "Category must be a string of at most 255 characters."
        custom_args = body.get("custom_args", {})
        if any(not isinstance(v, str) for v in custom_args.values()):
            return "custom_args", "custom_args values must be strings."
        if sum(len(k) + len(v) for k, v in custom_args.items()) > 10_000:
            return "custom_args", "custom_args exceeds 10,000 bytes."
        headers = body.get("headers", {})
        for name, value in headers.items():
            if name.lower() in SENDGRID_RESERVED_HEADERS:
                return "headers", f"The header {name} is reserved."
            if not isinstance(value, str):
                return "headers", "Header values must be strings."
        if "reply_to" in body and "reply_to_list" in body:
            return "reply_to", "reply_to and reply_to_list are mutually exclusive."
        return None


_TAG = re.compile(r"^[A-Za-z0-9_-]{1,256}$")


def resend_body(status: int, name: str, message: str = "error") -> dict[str, Any]:
    """Resend's error body: `{statusCode, message, name}`."""
    return {"statusCode": status, "message": message, "name": name}


def resend_reply(status: int, name: str, headers: dict[str, str] | None = None) -> Reply:
    """A scripted Resend error answer."""
    return Reply(status, resend_body(status, name), headers or {})


def _resend_error(status: int, name: str, message: str) -> Answer:
    return Answer(status, resend_body(status, name, message))


class FakeResend(FakeAPI):
    def __init__(self, api_key: str = "re_test_key") -> None:
        super().__init__()
        self.api_key = api_key
        self._keys: dict[str, tuple[bytes, str | None]] = {}  # key -> (body, id once answered)
        self._keys_lock = threading.Lock()

    def handle(self, received: Received) -> Answer:
        if received.path != "/emails":
            return _resend_error(404, "not_found", "Not found")
        auth = received.headers.get("authorization")
        if auth is None:
            return _resend_error(401, "missing_api_key", "Missing API key")
        if auth != f"Bearer {self.api_key}":
            return _resend_error(403, "invalid_api_key", "API key is invalid")
        key = received.headers.get("idempotency-key")
        if key is not None and not 1 <= len(key) <= 256:
            return _resend_error(400, "invalid_idempotency_key", "Key must be 1-256 characters")
        problem = self.validate(received.body)
        if problem is not None:
            return _resend_error(422, *problem)
        if key is None:
            return self._send(received)
        with self._keys_lock:
            known = self._keys.get(key)
            if known is None:
                self._keys[key] = (received.raw, None)
        if known is not None:
            body, first_id = known
            if body != received.raw:
                return _resend_error(
                    409,
                    "invalid_idempotent_request",
                    "Same idempotency key used with a different request payload",
                )
            if first_id is None:
                return _resend_error(
                    409,
                    "concurrent_idempotent_requests",
                    "Same idempotency key used while original request is still in progress",
                )
            return Answer(200, {"id": first_id})  # the first answer again; nothing sent
        answer = self._send(received)
        with self._keys_lock:
            self._keys[key] = (received.raw, answer.body["id"])
        return answer

    def _send(self, received: Received) -> Answer:
        email_id = uuid.uuid4().hex
        tags = {t["name"]: t["value"] for t in received.body.get("tags", [])}
        to = received.body["to"]
        self.accept(
            received,
            message_id=email_id,
            email_id=tags.get("email_id"),
            recipients=[to] if isinstance(to, str) else list(to),
        )
        return Answer(200, {"id": email_id})

    @staticmethod
    def validate(body: Any) -> tuple[str, str] | None:
        """(name, message) of the first rule the request breaks, as Resend reports it."""
        if not isinstance(body, dict):
            return "validation_error", "Invalid JSON body"
        for name in ("from", "to", "subject"):
            if not body.get(name):
                return "missing_required_field", f"Missing `{name}` field."
        to = body["to"]
        if isinstance(to, list) and len(to) > 50:
            return "validation_error", "`to` may hold at most 50 addresses"
        if not (body.get("html") or body.get("text")):
            return "validation_error", "Either `html` or `text` must be provided"
        for tag in body.get("tags", []):
            if not (_TAG.match(str(tag.get("name", ""))) and _TAG.match(str(tag.get("value", "")))):
                return (
                    "validation_error",
                    "Tags should only contain ASCII letters, numbers, underscores, or dashes",
                )
        headers = body.get("headers", {})
        if not isinstance(headers, dict) or any(not isinstance(v, str) for v in headers.values()):
            return "validation_error", "`headers` must map names to strings"
        return None
