"""The HTTP API's request and response models: what the routes parse and what /openapi.json
documents. Request bodies reuse the tools' own argument models, so the API and the tools
check input the same way; the workspace always comes from the API key."""

from __future__ import annotations

import functools
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from tools import ExecutionStatus
from tools.schemas import (
    Address,
    AttachmentPaths,
    CopyRecipients,
    ExecutionId,
    HeaderText,
    Note,
    PageLimit,
    PageOffset,
    Preheader,
    ProviderName,
    SendEmailFields,
    Subject,
    TimeBound,
    UUIDStr,
)

WorkspaceId = Annotated[
    UUIDStr | None,
    Field(description="Must be the API key's own workspace; defaults to it when omitted"),
]


class _ParsedPerRequest(BaseModel):
    @classmethod
    def model_json_schema(cls, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """The schema; the plain call (no arguments) is built once per model.

        flask-openapi3 4.3 builds a query or header model's JSON schema on every request, only
        to find its list fields: a tenth of a send's CPU under load (py-spy,
        bench/serve_latency.py). It only reads the result. The OpenAPI document asks with
        arguments and gets its own.
        """
        if args or kwargs:
            return super().model_json_schema(*args, **kwargs)
        return _plain_schema(cls)


class _Query(_ParsedPerRequest):
    # Query values arrive as text: numbers are parsed from it. Unknown parameters are refused.
    model_config = ConfigDict(extra="forbid", frozen=True)


@functools.cache
def _plain_schema(model: type[BaseModel]) -> dict[str, Any]:
    return BaseModel.model_json_schema.__func__(model)  # type: ignore[attr-defined]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


# Requests -------------------------------------------------------------------------------


class WorkspaceQuery(_Query):
    workspaceId: WorkspaceId = None


class MetricsQuery(_Query):
    """`circuitExecutionId` alone: engagement of that execution. `action=history`: the sending
    history, paged. `action=performance`: per-provider performance."""

    workspaceId: WorkspaceId = None
    action: Literal["history", "performance"] | None = None
    circuitExecutionId: ExecutionId | None = None
    clientId: UUIDStr | None = None
    recipient: Address | None = None
    limit: PageLimit = 50
    offset: PageOffset = 0


class ExecutionsQuery(_Query):
    """Any filter given narrows the list; `createdSince` <= created < `createdBefore`."""

    status: ExecutionStatus | None = None
    recipient: Address | None = None
    clientId: UUIDStr | None = None
    circuitExecutionId: ExecutionId | None = None
    provider: ProviderName | None = None
    createdSince: TimeBound = None
    createdBefore: TimeBound = None
    limit: PageLimit = 50
    offset: PageOffset = 0


class CrmContextQuery(_Query):
    recipient: Address
    clientId: UUIDStr | None = None


class ProviderHealthQuery(_Query):
    windowMinutes: Annotated[int, Field(ge=1, le=7 * 24 * 60)] = 60


class SuppressionsQuery(_Query):
    search: Annotated[str, Field(min_length=1, max_length=320)] | None = None
    limit: PageLimit = 50
    offset: PageOffset = 0


class EscalationsQuery(_Query):
    includeAcknowledged: bool = False
    limit: PageLimit = 50
    offset: PageOffset = 0


class AddSuppressionBody(_Body):
    email: Address
    reason: Literal["bounced", "complained", "unsubscribed"]
    bounce_type: Literal["hard", "soft"] | None = None
    note: Note


class RemoveSuppressionBody(_Body):
    email: Address
    note: Note


class NoteBody(_Body):
    note: Note


class UpdateWorkspaceBody(_Body):
    """Any of these; the rest stay as they are. Recorded with `note`."""

    sender_email: Address | None = None
    sender_name: Annotated[HeaderText, Field(min_length=1, max_length=200)] | None = None
    postal_address: Annotated[str, Field(min_length=5, max_length=500)] | None = None
    rate_limit_per_hour: Annotated[int, Field(ge=1, le=1_000_000)] | None = None
    note: Note | None = None


class CollectQuery(_Query):
    workspaceId: WorkspaceId = None
    action: Literal["collect-metrics", "evaluate-engagement"]
    emailId: UUIDStr | None = None  # for evaluate-engagement


class SendHeaders(_ParsedPerRequest):
    # Every other header of the request arrives too: only Prefer is read.
    model_config = ConfigDict(extra="ignore", frozen=True)

    prefer: str | None = Field(
        default=None,
        description="`respond-async` (RFC 7240): every check runs now, and the answer is 202 "
        "at once with status `queued` and the status URL in `Location`; a worker sends it",
    )

    @property
    def respond_async(self) -> bool:
        preferences = (self.prefer or "").split(",")
        return any(p.split(";")[0].strip().lower() == "respond-async" for p in preferences)


class SendBody(SendEmailFields):
    """Seed 001's send: CX06's asset (or none, to send what CX06 logged) to one recipient."""


class SimpleSendBody(_Body):
    """Seed 000's send, still circuit-bound: `subject`/`body` must be the asset CX06 approved
    for `circuit_execution_id` (`body` is its html_body)."""

    to: Address
    subject: Subject
    body: Annotated[str, Field(min_length=1)]
    text_body: str | None = None
    preheader: Preheader | None = None
    circuit_execution_id: ExecutionId
    client_id: UUIDStr
    cc: CopyRecipients = []
    bcc: CopyRecipients = []
    attachments: AttachmentPaths = []


class StatusPath(BaseModel):
    email_id: Annotated[str, Field(max_length=100)]


class TokenQuery(BaseModel):
    # A link may come back with parameters added on the way (tracking): they are ignored.
    model_config = ConfigDict(extra="ignore")

    token: Annotated[str, Field(max_length=2000)] | None = None


# Responses ------------------------------------------------------------------------------


class _Open(BaseModel):
    # Responses carry more fields than documented here; a client must ignore the others.
    model_config = ConfigDict(extra="allow")


class ErrorDetail(_Open):
    code: str
    message: str


class ErrorResponse(_Open):
    """Every error: `{"success": false, "error": {"code", "message", ...}}`."""

    success: Literal[False]
    error: ErrorDetail


class ExecutionResult(_Open):
    sent: bool
    provider: str | None
    provider_message_id: str | None
    sent_at: str | None
    retry_count: int


class CircuitValidation(_Open):
    circuits_passed: list[str]
    missing_circuits: list[str]
    failed_circuits: list[str]
    all_required_passed: bool


class SendResponse(_Open):
    """The send result; on failure also `success: false` and `error`."""

    success: bool
    email_id: str | None
    status: ExecutionStatus
    message: str
    timestamp: str
    recipient: str | None
    workspace_id: str | None
    circuit_execution_id: str | None
    execution_result: ExecutionResult | None = None
    circuit_validation: CircuitValidation | None = None
    error: ErrorDetail | None = None


# Every status `api.responses.send_response` answers a send with (both send routes document it).
SEND_RESPONSES = {status: SendResponse for status in (200, 202, 403, 409, 500, 503)}


class CircuitRecorded(_Open):
    success: Literal[True]
    circuit_execution_id: str
    circuit_id: str


class Engagement(_Open):
    delivered: bool
    bounced: bool
    opened: bool
    clicked: bool
    unsubscribed: bool
    complained: bool


class MetricsResponse(_Open):
    """Engagement of one execution, the sending history, or the provider summary, by action."""

    success: Literal[True]
    workspace_id: str
    metrics: Engagement | None = None
    metrics_count: int | None = None
    executions: list[dict[str, Any]] | None = None
    total_count: int | None = None
    providers: list[dict[str, Any]] | None = None


class CollectResponse(_Open):
    success: Literal[True]
    workspace_id: str
    metrics_collected: int
    message: str


class ValidateResponse(_Open):
    email: str | None
    valid: bool


class StatusResponse(_Open):
    email_id: str
    found: Literal[True]
    status: ExecutionStatus


class ProviderHealthResponse(_Open):
    success: Literal[True]
    workspace_id: str
    window_minutes: int
    providers: list[dict[str, Any]]


class SuppressionsResponse(_Open):
    success: Literal[True]
    suppressions: list[dict[str, Any]]
    total_count: int


class SuppressionChangeResponse(_Open):
    success: Literal[True]
    email: str


class EscalationsResponse(_Open):
    success: Literal[True]
    escalations: list[dict[str, Any]]
    total_count: int


class AcknowledgedResponse(_Open):
    success: Literal[True]
    email_id: str
    acknowledged: dict[str, Any]


class ReputationResponse(_Open):
    success: Literal[True]
    complaint_rate: float
    unsubscribe_rate: float
    sends: int
    judged: bool
    signals: list[dict[str, Any]]
    sending_paused: bool


class CrmContextResponse(_Open):
    success: Literal[True]
    recipient: str
    client_id: str | None
    crm_context: dict[str, Any] = Field(
        description="Seed 001's CRMContext: lead_stage, last_contacted_at, service_category, "
        "location, historical_engagement, brand_rules; a field the CRM has no value for is absent"
    )


class WorkspaceResponse(_Open):
    success: Literal[True]
    workspace_id: str
    name: str
    sender_email: str
    sender_name: str | None
    postal_address: str
    rate_limit_per_hour: int


class SentAgainResponse(_Open):
    success: Literal[True]
    email_id: str
    status: str  # after it: sent, blocked, scheduled (queued or deferred), escalated again...
    outcome: str  # what the send became (sent, blocked, deferred, delivery_failed...) or queued
    action: dict[str, Any]


class ProvidersResponse(_Open):
    providers: list[dict[str, Any]]
    smtp_presets: dict[str, dict[str, Any]]


class WebhookResponse(_Open):
    success: Literal[True]
    received: int
    stored: int
    duplicates: int
