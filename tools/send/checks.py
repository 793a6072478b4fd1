"""Step 1: the request's recipients and attachments, checked before any database work.

The request's shape (required fields, UUIDs, no CR/LF in header values, content size) was
parsed at the tool's boundary (`tools.schemas.SendEmailArgs`). Here each address is checked
with email-validator and attachments are read from inside `EMAIL_ATTACHMENTS_DIR` only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from settings import Settings
from tools.addresses import CheckedAddress, check_address
from tools.attachments import load_attachments
from tools.providers.base import Attachment
from tools.schemas import SendEmailArgs


@dataclass(frozen=True)
class Recipients:
    """The main recipient and the copies, one per person (case-insensitively)."""

    to: CheckedAddress
    cc: tuple[CheckedAddress, ...]
    bcc: tuple[CheckedAddress, ...]

    @property
    def keys(self) -> list[str]:
        """Every recipient's identity: what suppression and the hourly limit count."""
        return [a.key for a in (self.to, *self.cc, *self.bcc)]


@dataclass(frozen=True)
class CheckedSend:
    """A send whose request passed step 1: what the reservation decides on.

    `email_id` is the execution's id: new for a request, the row's own for a due send.
    `crm_context`: what the CRM knew when a request came (`tools/crm_context.py`), stored with
    its row; None for a due send, whose row has it already.
    """

    email_id: str
    args: SendEmailArgs
    recipients: Recipients
    attachments: tuple[Attachment, ...]
    crm_context: dict[str, Any] | None = None


def check_send(settings: Settings, email_id: str, args: SendEmailArgs) -> CheckedSend:
    """The checked send, or `ToolFailure` (`invalid_recipient`, then `attachment_rejected`)."""
    recipients = _recipients(settings, args)
    files = load_attachments(
        args.attachments,
        folder=settings.attachments_dir,
        max_bytes=settings.max_attachment_bytes,
    )
    return CheckedSend(email_id, args, recipients, files)


def _recipients(settings: Settings, args: SendEmailArgs) -> Recipients:
    deliverability = settings.check_deliverability

    def check(address: str, field: str) -> CheckedAddress:
        return check_address(address, check_deliverability=deliverability, field=field)

    to = check(args.recipient, "recipient")
    copies = [check(a, f"cc[{i}]") for i, a in enumerate(args.cc)]
    blind = [check(a, f"bcc[{i}]") for i, a in enumerate(args.bcc)]
    # One copy per person: a repeated or differently-cased address is dropped.
    seen = {to.key}
    copies = [a for a in copies if a.key not in seen and not seen.add(a.key)]
    blind = [a for a in blind if a.key not in seen and not seen.add(a.key)]
    return Recipients(to, tuple(copies), tuple(blind))
