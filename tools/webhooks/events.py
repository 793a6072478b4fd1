"""What every provider's webhook comes down to: one normalised engagement event."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

from tools.errors import ErrorCode, ToolFailure

# The engagement kinds folded into the per-email metrics; anything else is stored raw only.
Kind = Literal["delivered", "bounced", "opened", "clicked", "unsubscribed", "complained", "other"]

# How far a signed timestamp may be from now (Svix's tolerance, used for SendGrid too).
TIMESTAMP_TOLERANCE_SECONDS = 300


@dataclass(frozen=True)
class EngagementEvent:
    """One verified provider event.

    `dedup_key` is what makes a redelivery harmless; `email_id`/`workspace_id` are what the
    send put into the message (SendGrid custom_args, Resend tags); `provider_message_id`
    links an event when they are missing. `recipient` is None when the provider does not say
    which recipient the event is about.
    """

    provider: str
    dedup_key: str
    event_type: str  # the provider's own name, e.g. "spamreport", "email.bounced"
    kind: Kind
    occurred_at: datetime
    payload: dict[str, Any] = field(repr=False)
    recipient: str | None = None
    email_id: str | None = None
    workspace_id: str | None = None
    provider_message_id: str | None = None
    bounce_type: Literal["hard", "soft"] | None = None


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def json_body(body: bytes) -> Any:
    """A verified body parsed as strict JSON (no NaN or Infinity), or `ToolFailure`."""
    try:
        return json.loads(body, parse_constant=_no_constants)
    except (ValueError, RecursionError):
        raise ToolFailure(ErrorCode.INVALID_INPUT, "the body is not JSON") from None


class WebhookReader(Protocol):
    """One provider's webhook: verifies a request and reads its events."""

    provider: str

    def read(self, headers: Mapping[str, str], body: bytes) -> tuple[list[EngagementEvent], int]:
        """(events, unreadable items) of a verified request, else `ToolFailure`."""
        ...
