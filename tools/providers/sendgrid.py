"""SendGrid v3 Mail Send: `POST /v3/mail/send`, 202 with `X-Message-Id` on success.

`custom_args` carry `email_id` and `workspace_id`: SendGrid merges them into every event its
webhook posts, which is how events map back to an execution. Tags become categories. SendGrid
has no idempotency key, so an unanswered request is never repeated (see `Provider.idempotent`).
"""

from __future__ import annotations

import base64
import time
from typing import Any

import httpx

from tools.providers.base import OutgoingEmail
from tools.providers.http_api import HTTPAPIProvider

MAX_CATEGORIES = 10


class SendGridProvider(HTTPAPIProvider):
    name = "sendgrid"

    def request(self, email: OutgoingEmail) -> tuple[str, dict[str, Any], dict[str, str]]:
        content = email.content
        personalization: dict[str, Any] = {"to": [{"email": email.to}]}
        if email.cc:
            personalization["cc"] = [{"email": a} for a in email.cc]
        if email.bcc:
            personalization["bcc"] = [{"email": a} for a in email.bcc]
        sender: dict[str, str] = {"email": email.sender_email}
        if email.sender_name:
            sender["name"] = email.sender_name
        body: dict[str, Any] = {
            "personalizations": [personalization],
            "from": sender,
            "subject": email.subject,
            # SendGrid requires text/plain before text/html.
            "content": [
                {"type": "text/plain", "value": content.text},
                {"type": "text/html", "value": content.html},
            ],
            "headers": dict(content.headers),
            "custom_args": {"email_id": email.email_id, "workspace_id": email.workspace_id},
        }
        if email.tags:
            body["categories"] = list(email.tags[:MAX_CATEGORIES])
        if email.attachments:
            body["attachments"] = [
                {
                    "content": base64.b64encode(item.data).decode("ascii"),
                    "type": item.content_type,
                    "filename": item.filename,
                    "disposition": "attachment",
                }
                for item in email.attachments
            ]
        return "/v3/mail/send", body, {}

    def message_id(self, response: httpx.Response) -> str | None:
        return response.headers.get("x-message-id")

    def error_message(self, body: Any) -> str:
        """SendGrid answers `{"errors": [{"message": ..., "field": ...}, ...]}`."""
        errors = body.get("errors") if isinstance(body, dict) else None
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            return str(errors[0].get("message", ""))
        return ""

    def retry_after(self, response: httpx.Response) -> float | None:
        """SendGrid's 429 gives `X-RateLimit-Reset`, the epoch second the limit resets."""
        reset = response.headers.get("x-ratelimit-reset")
        if reset is not None:
            try:
                return max(0.0, float(reset) - time.time())
            except ValueError:
                pass
        return super().retry_after(response)
