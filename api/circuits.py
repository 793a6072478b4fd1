"""Seed 001's routes: circuit results in, circuit-bound sends, engagement metrics."""

from __future__ import annotations

from flask_openapi3 import Tag

import tools
from api.auth import own_workspace, protected_blueprint
from api.responses import send_response, tool_response
from api.schemas import (
    SEND_RESPONSES,
    CircuitRecorded,
    CollectQuery,
    CollectResponse,
    ErrorResponse,
    MetricsQuery,
    MetricsResponse,
    SendBody,
    SendHeaders,
    WorkspaceQuery,
)
from tools.errors import ErrorCode, ToolFailure, failure_result
from tools.schemas import CircuitResultFields

_ERRORS = {400: ErrorResponse, 401: ErrorResponse, 403: ErrorResponse, 404: ErrorResponse}

circuits = protected_blueprint(
    "circuits",
    "/api/circuits",
    Tag(name="circuits", description="Circuit-bound sends (seed 001)"),
    _ERRORS,
)


@circuits.post("/executions", responses={201: CircuitRecorded})
def record_execution(query: WorkspaceQuery, body: CircuitResultFields):
    """Log one circuit run (the hand-off from upstream); CX06's output is the approved asset."""
    workspace_id = own_workspace(query.workspaceId)
    result = tools.record_circuit_result(workspace_id, **body.model_dump(exclude_none=True))
    return tool_response(result, ok=201)


@circuits.post(
    "/agents/email/send",
    responses=SEND_RESPONSES,
)
def send(query: WorkspaceQuery, body: SendBody, header: SendHeaders):
    """Send CX06's asset once CX01-CX06 passed: 200 sent, 202 scheduled or queued, 403 blocked
    by circuits, suppression or limits, 409 already sent (the first result), 500 not delivered
    (the body carries CX08's decision: rescheduled with `scheduled_for`, or escalated; the send
    is kept, and a retry of the same request returns it)."""
    workspace_id = own_workspace(query.workspaceId)
    result = tools.send_email(
        workspace_id, **body.model_dump(exclude_none=True), respond_async=header.respond_async
    )
    return send_response(result)


@circuits.get("/agents/email/metrics", responses={200: MetricsResponse})
def metrics(query: MetricsQuery):
    """Engagement of one execution (`circuitExecutionId`), the sending history
    (`action=history`, paged, with `total_count`) or per-provider performance
    (`action=performance`)."""
    workspace_id = own_workspace(query.workspaceId)
    if query.action == "history":
        result = tools.get_send_history(
            workspace_id, query.clientId, query.recipient, query.limit, query.offset
        )
    elif query.action == "performance":
        result = tools.provider_performance(workspace_id)
    elif query.circuitExecutionId is None:
        missing = ToolFailure(
            ErrorCode.MISSING_FIELD,
            "circuitExecutionId is required (or action=history|performance)",
            field="circuitExecutionId",
        )
        result = failure_result(missing)
    else:
        result = tools.get_engagement_metrics(workspace_id, query.circuitExecutionId)
    return tool_response(result)


@circuits.post("/agents/email/metrics", responses={200: CollectResponse})
def collect_metrics(query: CollectQuery):
    """`action=collect-metrics`: fold this workspace's provider events that arrived before
    their send was recorded (the worker does so too, every poll), and with
    `EMAIL_CX07_ON_COLLECT` evaluate the emails whose engagement changed.
    `action=evaluate-engagement&emailId=`: CX07's evaluation of one sent email, logged as its
    CX07 circuit result."""
    workspace_id = own_workspace(query.workspaceId)
    if query.action == "collect-metrics":
        return tool_response(tools.collect_metrics(workspace_id))
    if query.emailId is None:
        missing = ToolFailure(
            ErrorCode.MISSING_FIELD, "emailId is required for evaluate-engagement", field="emailId"
        )
        return tool_response(failure_result(missing))
    return tool_response(tools.evaluate_engagement(workspace_id, query.emailId))
