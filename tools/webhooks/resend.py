"""Resend's webhooks, delivered by Svix: signature check (the `svix` package) and normalisation.

Svix signs `{svix-id}.{svix-timestamp}.{raw body}` with HMAC-SHA256 under the `whsec_` secret
(`RESEND_WEBHOOK_SECRET`) and refuses timestamps more than five minutes off. `svix-id` stays
the same across redeliveries, so it is the dedup key. The send's `email_id` and
`workspace_id` come back in `data.tags`, an object map. An event does not say which of the
email's recipients it is about.
"""

from __future__ import annotations

import binascii
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from svix.webhooks import Webhook, WebhookVerificationError

from settings import SettingsError
from tools.errors import ErrorCode, ToolFailure
from tools.webhooks.events import EngagementEvent, Kind, json_body

_KINDS: dict[str, Kind] = {
    "email.delivered": "delivered",
    "email.bounced": "bounced",
    "email.opened": "opened",
    "email.clicked": "clicked",
    "email.complained": "complained",
}
_HEADERS = ("svix-id", "svix-timestamp", "svix-signature")


class ResendWebhook:
    """Verifies and reads Resend (Svix) webhook requests."""

    provider = "resend"

    def __init__(self, secret: str) -> None:
        try:
            self._svix = Webhook(secret)
        except (ValueError, binascii.Error, RuntimeError):
            raise SettingsError(
                "RESEND_WEBHOOK_SECRET must be the whsec_ secret Resend shows"
            ) from None

    def read(self, headers: Mapping[str, str], body: bytes) -> tuple[list[EngagementEvent], int]:
        """The one event of a request Svix signed for Resend in the last five minutes (and 0
        unreadable items), else `ToolFailure` (`invalid_signature`, or `invalid_input` for a
        signed body of the wrong shape). `headers` has lower-case names.
        """
        self._verify(headers, body)
        return [self._event(headers["svix-id"], json_body(body))], 0

    def _verify(self, headers: Mapping[str, str], body: bytes) -> None:
        wanted = {name: headers.get(name) or "" for name in _HEADERS}
        if not all(wanted.values()):
            raise _rejected("missing svix-id, svix-timestamp or svix-signature")
        try:
            self._svix.verify(body, wanted)
        except WebhookVerificationError as error:
            raise _rejected(str(error).lower()) from None
        except ValueError:  # a malformed signature list, or a body that is not UTF-8
            raise _rejected("the signature does not match") from None

    @staticmethod
    def _event(svix_id: str, envelope: Any) -> EngagementEvent:
        data = envelope.get("data") if isinstance(envelope, dict) else None
        name = envelope.get("type") if isinstance(envelope, dict) else None
        if not isinstance(name, str) or not isinstance(data, dict):
            raise ToolFailure(ErrorCode.INVALID_INPUT, "the body must have 'type' and 'data'")
        kind = _KINDS.get(name, "other")
        bounce_type = None
        if kind == "bounced":
            bounce = data.get("bounce")
            permanent = isinstance(bounce, dict) and bounce.get("type") == "Permanent"
            bounce_type = "hard" if permanent else "soft"
        tags = data.get("tags") if isinstance(data.get("tags"), dict) else {}
        return EngagementEvent(
            provider="resend",
            dedup_key=svix_id[:400],
            event_type=name[:40],
            kind=kind,
            occurred_at=_when(envelope.get("created_at")),
            payload=envelope,
            # `data.to` is the email's To list, not the recipient the event is about.
            recipient=None,
            email_id=_text(tags.get("email_id")),
            workspace_id=_text(tags.get("workspace_id")),
            provider_message_id=_text(data.get("email_id")),
            bounce_type=bounce_type,
        )


def _when(value: Any) -> datetime:
    try:
        when = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        when = None
    if when is None or when.tzinfo is None:
        raise ToolFailure(
            ErrorCode.INVALID_INPUT, "created_at must be an ISO-8601 time with a zone"
        )
    return when


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _rejected(why: str) -> ToolFailure:
    return ToolFailure(ErrorCode.INVALID_SIGNATURE, f"Resend webhook rejected: {why}")
