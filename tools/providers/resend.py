"""Resend: `POST /emails`, `200 {"id": ...}` on success, with an `Idempotency-Key`.

The key is the execution's delivery round, so a repeat after an unanswered request returns
the first request's id instead of sending again: Resend is the one provider here where such a
repeat is safe (`idempotent = True`). Its 409 answers are told apart:
`concurrent_idempotent_requests` (the first is still in flight: retry) and
`invalid_idempotent_request` (this key already carried another request: it may have been
sent, so stop). Quota errors are 429s that waiting will not fix.
"""

from __future__ import annotations

import base64
from email.utils import formataddr
from typing import Any

import httpx

from tools.providers.base import (
    AmbiguousDeliveryError,
    OutgoingEmail,
    PermanentProviderError,
    ProviderError,
    RetryableProviderError,
)
from tools.providers.http_api import HTTPAPIProvider

_QUOTA_ERRORS = frozenset({"daily_quota_exceeded", "monthly_quota_exceeded"})


class ResendProvider(HTTPAPIProvider):
    name = "resend"
    idempotent = True

    def request(self, email: OutgoingEmail) -> tuple[str, dict[str, Any], dict[str, str]]:
        content = email.content
        sender = (
            formataddr((email.sender_name, email.sender_email))
            if email.sender_name
            else (email.sender_email)
        )
        # Tag names and values allow only ASCII letters, digits, "_" and "-" (the tool schema
        # holds user tags to that); email_id and workspace_id map webhook events back.
        tags = [
            {"name": "email_id", "value": email.email_id},
            {"name": "workspace_id", "value": email.workspace_id},
            *({"name": tag, "value": "true"} for tag in email.tags),
        ]
        body: dict[str, Any] = {
            "from": sender,
            "to": [email.to],
            "subject": email.subject,
            "html": content.html,
            "text": content.text,
            "headers": dict(content.headers),
            "tags": tags,
        }
        if email.cc:
            body["cc"] = list(email.cc)
        if email.bcc:
            body["bcc"] = list(email.bcc)
        if email.attachments:
            body["attachments"] = [
                {
                    "filename": item.filename,
                    "content": base64.b64encode(item.data).decode("ascii"),
                    "content_type": item.content_type,
                }
                for item in email.attachments
            ]
        return "/emails", body, {"Idempotency-Key": email.idempotency_key}

    def message_id(self, response: httpx.Response) -> str | None:
        try:
            found = response.json().get("id")
        except (ValueError, AttributeError):
            return None
        return str(found) if found else None

    def error_message(self, body: Any) -> str:
        """Resend answers `{"statusCode": ..., "name": ..., "message": ...}`."""
        return str(body.get("message", "")) if isinstance(body, dict) else ""

    def classify(self, response: httpx.Response) -> ProviderError:
        name = _error_name(response)
        text = f"{self.name}: HTTP {response.status_code} {name} {self.error_text(response)}"
        if response.status_code == 409 and name == "concurrent_idempotent_requests":
            return RetryableProviderError(text, status_code=409, retry_after=1.0)
        if response.status_code == 409:
            return AmbiguousDeliveryError(text, status_code=409)
        if response.status_code == 429 and name in _QUOTA_ERRORS:
            return PermanentProviderError(text, status_code=429, provider_fault=True)
        return super().classify(response)


def _error_name(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return ""
    return str(body.get("name", "")) if isinstance(body, dict) else ""
