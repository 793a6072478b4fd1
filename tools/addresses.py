"""Email addresses: checking them (email-validator) and the one identity they are matched by.

Every comparison of addresses (suppression, the recipient throttle, idempotency, attributing
a webhook event) goes through `address_key` or `CheckedAddress.key`, which agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from email_validator import EmailNotValidError, EmailUndeliverableError
from email_validator import validate_email as _validate

from tools.errors import ErrorCode, ToolFailure


@dataclass(frozen=True)
class CheckedAddress:
    normalized: str  # as email-validator normalises it (domain lower-cased, Unicode kept)
    wire: str  # the ASCII form for envelopes and headers (punycode domain)

    @property
    def key(self) -> str:
        """Case-insensitive identity used for suppression, throttling and idempotency."""
        return self.normalized.lower()


def address_key(email: str, field: str = "email") -> str:
    """The case-insensitive identity of an address, or `ToolFailure(invalid_input)`."""
    try:
        info = _validate(email, check_deliverability=False)
    except EmailNotValidError as error:
        raise ToolFailure(ErrorCode.INVALID_INPUT, f"{field}: {error}", field=field) from None
    return info.normalized.lower()


def check_address(address: str, *, check_deliverability: bool, field: str) -> CheckedAddress:
    """Validate one address for sending, or raise `ToolFailure(invalid_recipient)`.

    Addresses whose local part needs SMTPUTF8 are refused with a clear message: Flask-Mail
    RFC 2047-encodes such local parts in the SMTP envelope, which no server can deliver.
    """
    try:
        info = _validate(address, check_deliverability=check_deliverability)
    except EmailNotValidError as error:
        raise ToolFailure(ErrorCode.INVALID_RECIPIENT, f"{field}: {error}", field=field) from None
    if _needs_smtputf8(info):
        raise ToolFailure(ErrorCode.INVALID_RECIPIENT, f"{field}: {NEEDS_SMTPUTF8}", field=field)
    return CheckedAddress(info.normalized, info.ascii_email)


NEEDS_SMTPUTF8 = (
    "addresses with a non-ASCII local part need SMTPUTF8, which this service does not send"
)


def _needs_smtputf8(info: Any) -> bool:
    return bool(info.smtputf8) or info.ascii_email is None


def describe_address(email: str, *, check_deliverability: bool) -> dict[str, Any]:
    """Seed 000's validation result for one address. Valid means this service can send to it:
    an address that needs SMTPUTF8 is well-formed but answered `valid: false`
    (`error_code: smtputf8_required`), as `send_email` refuses it."""
    try:
        info = _validate(email, check_deliverability=check_deliverability)
    except EmailUndeliverableError as error:
        return {"email": email, "valid": False, "error": str(error), "error_code": "undeliverable"}
    except EmailNotValidError as error:
        return {"email": email, "valid": False, "error": str(error), "error_code": "invalid_syntax"}
    if _needs_smtputf8(info):
        return {
            "email": email,
            "valid": False,
            "error": NEEDS_SMTPUTF8,
            "error_code": "smtputf8_required",
            "normalized": info.normalized,
            "smtputf8": True,
        }
    return {
        "email": email,
        "valid": True,
        "normalized": info.normalized,
        "local": info.local_part,
        "domain": info.domain,
        "ascii_email": info.ascii_email,
        "smtputf8": info.smtputf8,
    }
