"""Seed 000's routes under /api/email: send (still circuit-bound), validate, status,
providers; and seed 001's read-only CRM context."""

from __future__ import annotations

from flask import g, jsonify
from flask_openapi3 import Tag

import tools
from api.auth import protected_blueprint
from api.responses import send_response, tool_response
from api.schemas import (
    SEND_RESPONSES,
    CrmContextQuery,
    CrmContextResponse,
    ErrorResponse,
    ExecutionsQuery,
    MetricsResponse,
    ProviderHealthQuery,
    ProviderHealthResponse,
    ProvidersResponse,
    SendHeaders,
    SimpleSendBody,
    StatusPath,
    StatusResponse,
    ValidateResponse,
)
from settings import SMTP_PRESETS
from tools.schemas import ValidateEmailArgs

email = protected_blueprint(
    "email",
    "/api/email",
    Tag(name="email", description="Seed 000's email routes"),
    {400: ErrorResponse, 401: ErrorResponse},
)


@email.post(
    "/send",
    responses=SEND_RESPONSES,
)
def send(body: SimpleSendBody, header: SendHeaders):
    """Send `subject`/`body` to `to` through the same pipeline as the circuit route: CX01-CX06
    must have passed for `circuit_execution_id` and approved exactly this content."""
    asset = {"subject": body.subject, "html_body": body.body}
    if body.text_body is not None:
        asset["text_body"] = body.text_body
    if body.preheader is not None:
        asset["preheader"] = body.preheader
    result = tools.send_email(
        g.workspace_id,
        body.client_id,
        body.circuit_execution_id,
        body.to,
        asset,
        cc=body.cc,
        bcc=body.bcc,
        attachments=body.attachments,
        respond_async=header.respond_async,
    )
    return send_response(result)


@email.post("/validate", responses={200: ValidateResponse})
def validate(body: ValidateEmailArgs):
    """Check an address: 200 with `valid` true or false (false says why)."""
    return jsonify(tools.validate_email(body.email)), 200


@email.get("/status/<email_id>", responses={200: StatusResponse, 404: ErrorResponse})
def status(path: StatusPath):
    """Delivery status of one of this workspace's emails; another workspace's id is 404."""
    return tool_response(tools.get_email_status(path.email_id, workspace_id=g.workspace_id))


@email.get("/executions", responses={200: MetricsResponse})
def executions(query: ExecutionsQuery):
    """This workspace's sends, newest first, filtered by status, recipient, client, circuit
    execution, provider and creation time; paged, with `total_count`."""
    result = tools.get_send_history(
        g.workspace_id,
        client_id=query.clientId,
        recipient=query.recipient,
        limit=query.limit,
        offset=query.offset,
        status=query.status,
        circuit_execution_id=query.circuitExecutionId,
        provider=query.provider,
        created_since=query.createdSince,
        created_before=query.createdBefore,
    )
    return tool_response(result)


@email.get("/crm-context", responses={200: CrmContextResponse})
def crm_context(query: CrmContextQuery):
    """What the CRM knows of `recipient` and of the client `clientId` (read only): seed 001's
    CRMContext, as stored with each send this workspace accepts."""
    return tool_response(tools.get_crm_context(g.workspace_id, query.recipient, query.clientId))


@email.get("/providers/health", responses={200: ProviderHealthResponse})
def provider_health(query: ProviderHealthQuery):
    """Each provider's circuit breaker and this workspace's attempts with it over the last
    `windowMinutes` (60): attempts, sent, success rate, mean and slowest latency."""
    return tool_response(tools.provider_health(g.workspace_id, query.windowMinutes))


@email.get("/providers", responses={200: ProvidersResponse})
def providers():
    """The delivery chain in fallback order and the SMTP presets; never a key or password."""
    presets = {
        name: {"server": preset["server"], "port": preset["port"], "starttls": preset["use_tls"]}
        for name, preset in SMTP_PRESETS.items()
    }
    chain = tools.get_runtime().describe_delivery()
    return jsonify({"success": True, "providers": chain, "smtp_presets": presets}), 200
