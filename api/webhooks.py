"""Provider webhooks: no API key, the provider's signature instead (checked by the tools
before anything is stored)."""

from __future__ import annotations

from flask import request
from flask_openapi3 import APIBlueprint, Tag

import tools
from api.responses import tool_response
from api.schemas import ErrorResponse, WebhookResponse

webhooks = APIBlueprint(
    "webhooks",
    __name__,
    url_prefix="/api/email/webhooks",
    abp_tags=[Tag(name="webhooks", description="Signed provider event webhooks")],
    abp_responses={
        200: WebhookResponse,
        400: ErrorResponse,
        401: ErrorResponse,
        503: ErrorResponse,
    },
)


@webhooks.post("/sendgrid")
def sendgrid():
    """SendGrid Event Webhook: ECDSA signature over timestamp + raw body
    (`X-Twilio-Email-Event-Webhook-Signature`/`-Timestamp`), at most 5 minutes old."""
    return tool_response(
        tools.receive_webhook("sendgrid", dict(request.headers), request.get_data())
    )


@webhooks.post("/resend")
def resend():
    """Resend webhook delivered by Svix: `svix-id`, `svix-timestamp`, `svix-signature`."""
    return tool_response(tools.receive_webhook("resend", dict(request.headers), request.get_data()))
