"""Step 3: the finished message, as every provider receives it.

CX06's asset is rendered into its layout (hidden preheader, CAN-SPAM footer with the
workspace's postal address) with an unsubscribe link signed for this recipient and email, and
the headers that carry that link: `List-Unsubscribe` (https and mailto) and
`List-Unsubscribe-Post` (RFC 8058 one-click).
"""

from __future__ import annotations

from tools.providers.base import Content, OutgoingEmail
from tools.rendering import render_email
from tools.runtime import Runtime
from tools.send.reserve import Reserved


def compose(runtime: Runtime, reserved: Reserved) -> OutgoingEmail:
    """The email for `reserved`'s delivery round, rendered."""
    send, execution, workspace = reserved.send, reserved.execution, reserved.workspace
    recipients = send.recipients
    return OutgoingEmail(
        email_id=execution.id,
        workspace_id=workspace.id,
        # One key per delivery round: a round re-renders (a fresh unsubscribe token), and a
        # provider refuses one key with a different body.
        idempotency_key=f"{execution.id}.{execution.reschedule_count}",
        message_id=execution.message_id,
        sender_email=workspace.sender_email,
        sender_name=workspace.sender_name,
        to=recipients.to.wire,
        cc=tuple(a.wire for a in recipients.cc),
        bcc=tuple(a.wire for a in recipients.bcc),
        subject=reserved.asset.subject,
        content=_content(runtime, reserved),
        tags=tuple(reserved.asset.tags),
        attachments=send.attachments,
    )


def _content(runtime: Runtime, reserved: Reserved) -> Content:
    settings, workspace = runtime.settings, reserved.workspace
    token = runtime.tokens.make(
        workspace.id, reserved.send.recipients.to.key, reserved.execution.id
    )
    https_link = f"{settings.public_base_url}/api/email/unsubscribe?token={token}"
    mailto = settings.unsubscribe_mailto or workspace.sender_email
    rendered = render_email(
        reserved.asset,
        postal_address=workspace.postal_address,
        sender_name=workspace.sender_name,
        unsubscribe_url=https_link,
    )
    return Content(
        html=rendered.html,
        text=rendered.text,
        headers={
            "List-Unsubscribe": f"<{https_link}>, <mailto:{mailto}?subject=unsubscribe-{token}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        },
    )
