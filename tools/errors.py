"""Error codes of the public tool interface and the shape every failure result takes."""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class ErrorCode(StrEnum):
    MISSING_FIELD = "missing_field"
    INVALID_INPUT = "invalid_input"
    INVALID_RECIPIENT = "invalid_recipient"
    HEADER_INJECTION = "header_injection"
    CONTENT_TOO_LARGE = "content_too_large"
    ATTACHMENT_REJECTED = "attachment_rejected"
    UNKNOWN_WORKSPACE = "unknown_workspace"
    CIRCUIT_VALIDATION_FAILED = "circuit_validation_failed"
    CONTENT_MISMATCH = "content_mismatch"
    SUPPRESSED = "suppressed"
    RATE_LIMIT_EXCEEDED = "rate_limit_exceeded"
    RECIPIENT_THROTTLED = "recipient_throttled"
    DUPLICATE_SEND = "duplicate_send"
    ALL_PROVIDERS_FAILED = "all_providers_failed"
    COMPLAINT_RATE_EXCEEDED = "complaint_rate_exceeded"  # CX05's brand guard paused sending
    RECIPIENT_REJECTED = "recipient_rejected"  # a hard bounce at hand-over: now suppressed
    DELIVERY_UNCONFIRMED = "delivery_unconfirmed"  # handed over, no answer: maybe delivered
    INTERNAL_ERROR = "internal_error"
    # The database could not be reached: nothing was written (and, for a send, nothing sent).
    STORAGE_UNAVAILABLE = "storage_unavailable"
    # A send was handed to a provider (or failed there) but its outcome could not be recorded;
    # the row stays `sending` until the stalled-send sweep escalates it. Do not retry blindly.
    DELIVERY_UNRECORDED = "delivery_unrecorded"
    NOT_FOUND = "not_found"
    ALREADY_ACKNOWLEDGED = "already_acknowledged"  # an operator action done once already
    # Send again refused: the email is not escalated, or it may have been handed over.
    NOT_RESENDABLE = "not_resendable"
    INVALID_SIGNATURE = "invalid_signature"  # a webhook request not signed by its provider
    WEBHOOK_NOT_CONFIGURED = "webhook_not_configured"


class ToolFailure(Exception):
    """An expected failure raised inside a tool and turned into a result at its edge.

    Never escapes a public tool function: `tools.boundary` turns it into the tool's error
    result.
    """

    def __init__(self, code: ErrorCode, message: str, **details: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details

    def error_dict(self) -> dict[str, Any]:
        return {"code": self.code.value, "message": self.message, **self.details}


def echo(value: Any, limit: int = 320) -> str | None:
    """A caller's value safe to repeat in a result or log: short text only, else None."""
    return value if isinstance(value, str) and len(value) <= limit else None


def failure_result(failure: ToolFailure, **fields: Any) -> dict[str, Any]:
    """The result a simple tool returns for an expected failure."""
    return {"success": False, **fields, "error": failure.error_dict()}
