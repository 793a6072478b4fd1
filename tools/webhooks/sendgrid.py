"""SendGrid's Event Webhook: ECDSA signature check and event normalisation.

SendGrid signs `timestamp + raw body` with ECDSA P-256 / SHA-256 and sends the base64 DER
signature in `X-Twilio-Email-Event-Webhook-Signature`; the public key to check it with is the
base64 DER SubjectPublicKeyInfo shown in SendGrid's settings (`SENDGRID_WEBHOOK_PUBLIC_KEY`).
The body is a JSON array of events with the send's `custom_args` merged into each.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key

from settings import SettingsError
from tools import clock
from tools.errors import ErrorCode, ToolFailure
from tools.webhooks.events import TIMESTAMP_TOLERANCE_SECONDS, EngagementEvent, Kind, json_body

SIGNATURE_HEADER = "x-twilio-email-event-webhook-signature"
TIMESTAMP_HEADER = "x-twilio-email-event-webhook-timestamp"

_KINDS: dict[str, Kind] = {
    "delivered": "delivered",
    "bounce": "bounced",
    "open": "opened",
    "click": "clicked",
    "spamreport": "complained",
    "unsubscribe": "unsubscribed",
    "group_unsubscribe": "unsubscribed",
}


class SendGridWebhook:
    """Verifies and reads SendGrid Event Webhook requests."""

    provider = "sendgrid"

    def __init__(self, public_key: str) -> None:
        try:
            key = load_der_public_key(base64.b64decode(public_key, validate=True))
        except (ValueError, binascii.Error):
            raise SettingsError(
                "SENDGRID_WEBHOOK_PUBLIC_KEY must be the base64 DER public key SendGrid shows"
            ) from None
        if not isinstance(key, ec.EllipticCurvePublicKey):
            raise SettingsError("SENDGRID_WEBHOOK_PUBLIC_KEY must be an ECDSA public key")
        self._key = key

    def read(self, headers: Mapping[str, str], body: bytes) -> tuple[list[EngagementEvent], int]:
        """The events of a request SendGrid signed in the last five minutes, and how many items
        were not readable events; else `ToolFailure` (`invalid_signature`, or `invalid_input`
        when the signed body is not an array). `headers` has lower-case names.

        An unreadable item does not cost the others: refusing the batch would make SendGrid
        redeliver it until it gives up, losing the good events (hard bounces among them).
        """
        self._verify(headers, body)
        items = json_body(body)
        if not isinstance(items, list):
            raise ToolFailure(ErrorCode.INVALID_INPUT, "the body must be a JSON array of events")
        events = [event for item in items if (event := _event(item)) is not None]
        return events, len(items) - len(events)

    def _verify(self, headers: Mapping[str, str], body: bytes) -> None:
        signature = headers.get(SIGNATURE_HEADER)
        timestamp = headers.get(TIMESTAMP_HEADER)
        if not signature or not timestamp:
            raise _rejected("missing signature headers")
        try:
            signed_at = int(timestamp)
            self._key.verify(
                base64.b64decode(signature, validate=True),
                timestamp.encode("ascii") + body,
                ec.ECDSA(hashes.SHA256()),
            )
        except (ValueError, binascii.Error, UnicodeEncodeError, InvalidSignature):
            raise _rejected("the signature does not match") from None
        if abs(clock.utcnow().timestamp() - signed_at) > TIMESTAMP_TOLERANCE_SECONDS:
            raise _rejected("the signed timestamp is too old or too new")


def _event(item: Any) -> EngagementEvent | None:
    """One event, or None for an item without a usable `event` name and `timestamp`."""
    if not isinstance(item, dict):
        return None
    name = item.get("event")
    stamp = item.get("timestamp")
    if not isinstance(name, str) or not isinstance(stamp, int) or isinstance(stamp, bool):
        return None
    message_id = _text(item.get("sg_message_id"))
    kind = _KINDS.get(name, "other")
    bounce_type = None
    if kind == "bounced":
        # "blocked" is a refusal that may pass later (soft); "bounce" is a hard bounce.
        bounce_type = "soft" if item.get("type") == "blocked" else "hard"
    # sg_event_id changes between redeliveries, so the key is (message, event, time).
    dedup = f"{message_id or _text(item.get('smtp-id')) or _text(item.get('email'))}:{name}:{stamp}"
    if kind == "clicked":
        dedup += f":{_text(item.get('url'))}"
    try:
        occurred_at = datetime.fromtimestamp(stamp, UTC)
    except (OverflowError, OSError, ValueError):
        return None
    return EngagementEvent(
        provider="sendgrid",
        dedup_key=dedup[:400],
        event_type=name[:40],
        kind=kind,
        occurred_at=occurred_at,
        payload=item,
        recipient=_text(item.get("email")),
        email_id=_text(item.get("email_id")),
        workspace_id=_text(item.get("workspace_id")),
        # sg_message_id is the X-Message-Id of the send followed by ".filter...".
        provider_message_id=message_id.split(".", 1)[0] if message_id else None,
        bounce_type=bounce_type,
    )


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _rejected(why: str) -> ToolFailure:
    return ToolFailure(ErrorCode.INVALID_SIGNATURE, f"SendGrid webhook rejected: {why}")
