"""Argument models of the public tool functions: the one place input shape is checked.

Each tool is declared by its model (`tools.boundary.tool_function`): the model's fields, in
order, are the function's parameters, and its JSON schema is the one the EmailAgent
advertises. Pydantic errors are mapped onto the interface's error codes by `first_failure`,
in the pipeline's order of checks.
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    ValidationError,
    model_validator,
)
from pydantic_core import PydanticCustomError

from persistence.states import ExecutionStatus
from tools import clock
from tools.errors import ErrorCode, ToolFailure

MAX_CONTENT_CHARS = 100_000
MAX_TAGS = 10
MAX_COPY_RECIPIENTS = 50
MAX_ATTACHMENTS = 10
MAX_OUTPUT_BYTES = 1_000_000
MAX_SCHEDULE_AHEAD = timedelta(days=365)
REQUIRED_CIRCUITS = (
    "CX01_INTENT_DETECTION",
    "CX02_AUDIENCE_CLASSIFICATION",
    "CX03_STATE_MEMORY_RETRIEVAL",
    "CX04_CONTENT_STRATEGY_SELECTION",
    "CX05_BRAND_GUARD",
    "CX06_GENERATION_EXECUTION",
)
KNOWN_CIRCUITS = (*REQUIRED_CIRCUITS, "CX07_ENGAGEMENT_EVALUATION", "CX08_SELF_CORRECTION")
_CIRCUIT_BY_CODE = {name[:4]: name for name in KNOWN_CIRCUITS}
M = TypeVar("M", bound=BaseModel)
_EXECUTION_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,127}$")


def _uuid(value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise PydanticCustomError("uuid_format", "must be a UUID") from None


# Anything Python's email package or a mail server could treat as a line break or control
# code: C0 and C1 controls (CR, LF, VT, FF, NUL, NEL, ...) and Unicode line/paragraph separators.
_HEADER_BREAKS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _no_line_breaks(value: str) -> str:
    if _HEADER_BREAKS.search(value):
        raise PydanticCustomError(
            "header_injection",
            "must not contain CR, LF or other control characters (it goes into a mail header)",
        )
    return value


_TAG = r"^[A-Za-z0-9_-]{1,100}$"
_TAG_RE = re.compile(_TAG)


# Tag names the service itself sends to Resend, to map webhook events back to the email.
_RESERVED_TAGS = {"email_id", "workspace_id"}


def _tag(value: str) -> str:
    if not _TAG_RE.match(value):
        raise PydanticCustomError("invalid_tag", "a tag is 1-100 ASCII letters, digits, '_' or '-'")
    if value.lower() in _RESERVED_TAGS:
        raise PydanticCustomError("invalid_tag", "'email_id' and 'workspace_id' are reserved")
    return value


def _schedule_input(value: Any) -> Any:
    # Lax datetime parsing would read a number as a Unix timestamp; only ISO text is meant.
    if value is not None and not isinstance(value, str | datetime):
        raise PydanticCustomError("datetime_format", "must be an ISO-8601 date-time string")
    return value


def _json_object(value: dict[str, Any]) -> dict[str, Any]:
    try:
        size = len(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError, RecursionError):
        raise PydanticCustomError("json_format", "must be plain JSON (no NaN)") from None
    if size > MAX_OUTPUT_BYTES:
        raise PydanticCustomError(
            "output_too_large",
            "is {size} bytes as JSON; the limit is {limit}",
            {"size": size, "limit": MAX_OUTPUT_BYTES},
        )
    return value


def _execution_id(value: str) -> str:
    if not _EXECUTION_ID.match(value):
        raise PydanticCustomError(
            "execution_id_format",
            "must be 1-128 characters of letters, digits, '_', '.', ':' or '-'",
        )
    return value


def _http_url(value: str) -> str:
    if not re.match(r"^https?://[^\s/]+", value):
        raise PydanticCustomError("url_format", "must be an http(s) URL")
    return value


def circuit_name(value: str) -> str:
    """Full circuit name for `CX01` or `CX01_INTENT_DETECTION` (any case)."""
    name = _CIRCUIT_BY_CODE.get(value.strip().upper()[:4])
    if name is None or value.strip().upper() not in (name, name[:4]):
        raise PydanticCustomError(
            "circuit_id_format", "must be one of CX01..CX08 (code or full name)"
        )
    return name


UUIDStr = Annotated[str, AfterValidator(_uuid)]
HeaderText = Annotated[str, AfterValidator(_no_line_breaks)]
Address = Annotated[str, Field(min_length=3, max_length=320), AfterValidator(_no_line_breaks)]
ExecutionId = Annotated[str, AfterValidator(_execution_id)]
PageLimit = Annotated[int, Field(ge=1, le=500)]
PageOffset = Annotated[int, Field(ge=0, le=1_000_000)]
Subject = Annotated[HeaderText, Field(min_length=1, max_length=900)]
Preheader = Annotated[HeaderText, Field(max_length=500)]
CopyRecipients = Annotated[list[Address], Field(max_length=MAX_COPY_RECIPIENTS)]
AttachmentPaths = Annotated[
    list[Annotated[str, Field(min_length=1, max_length=500)]],
    Field(max_length=MAX_ATTACHMENTS, description="Paths relative to EMAIL_ATTACHMENTS_DIR"),
]


class _Args(BaseModel):
    # strict: "yes" is not True, 1 is not a string, bytes are not text.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class FinalAsset(_Args):
    """The finished email CX06 produced. It is sent as it is; nothing here is rewritten."""

    subject: Subject
    preheader: Preheader | None = None
    html_body: Annotated[str, Field(min_length=1)]
    text_body: str | None = None
    cta_url: Annotated[str, Field(max_length=2048), AfterValidator(_http_url)] | None = None
    # A form every provider takes as it is: SendGrid categories, Resend tag names.
    tags: Annotated[
        list[
            Annotated[HeaderText, AfterValidator(_tag), Field(json_schema_extra={"pattern": _TAG})]
        ],
        Field(
            max_length=MAX_TAGS,
            description="At most 10; ASCII letters, digits, '_' and '-', 1-100 characters each",
        ),
    ] = []

    @model_validator(mode="after")
    def _within_size_limit(self) -> FinalAsset:
        size = len(self.subject) + len(self.html_body) + len(self.text_body or "")
        if size > MAX_CONTENT_CHARS:
            raise PydanticCustomError(
                "content_too_large",
                "Content exceeds email limit: subject + html_body + text_body is {size} "
                "characters; the limit is {limit}",
                {"size": size, "limit": MAX_CONTENT_CHARS},
            )
        return self

    def content_fields(self) -> dict[str, Any]:
        """What the recipient sees: the fields CX06's content hash covers."""
        return {
            "subject": self.subject,
            "preheader": self.preheader or "",
            "html_body": self.html_body,
            "text_body": self.text_body or "",
            "cta_url": self.cta_url or "",
        }


def _sensible_schedule(when: datetime | None) -> datetime | None:
    if when is None:
        return None
    if when.tzinfo is None:
        raise PydanticCustomError("timezone_required", "the date-time needs a time zone")
    if not (datetime(2000, 1, 1, tzinfo=UTC) < when < clock.utcnow() + MAX_SCHEDULE_AHEAD):
        raise PydanticCustomError("schedule_range", "must be within the next 365 days")
    return when


class SendEmailFields(_Args):
    """What a send names besides its workspace (the HTTP API takes that from the key)."""

    client_id: Annotated[UUIDStr, Field(description="The client the send is for (UUID)")]
    circuit_execution_id: Annotated[
        ExecutionId, Field(description="The CX01-CX06 run that approved this email")
    ]
    recipient: Annotated[Address, Field(description="Recipient address")]
    final_asset: Annotated[
        FinalAsset | None,
        Field(description="CX06's asset; omit it to send the asset CX06 logged for the execution"),
    ] = None
    cc: CopyRecipients = []
    bcc: CopyRecipients = []
    attachments: AttachmentPaths = []
    scheduled_for: Annotated[
        Annotated[datetime, Strict(False)] | None,  # parsed from ISO text
        BeforeValidator(_schedule_input),
        # On the field, not the model: a refusal then names `scheduled_for`, over HTTP too.
        AfterValidator(_sensible_schedule),
        Field(description="ISO-8601 with a time zone; later sends wait for it"),
    ] = None


class _InWorkspace(_Args):
    workspace_id: Annotated[UUIDStr, Field(description="The tenant (UUID)")]


# Bases in this order put `workspace_id` first: pydantic takes fields from the last base first.
class SendEmailArgs(SendEmailFields, _InWorkspace):
    """Send one circuit-approved email to one recipient."""

    respond_async: Annotated[
        bool,
        Field(
            description="Accept it (every check runs now) and let a worker send it: the result "
            "says `queued` at once"
        ),
    ] = False


class CreateWorkspaceArgs(_Args):
    """Create a tenant. The API key in the result is shown once; only its hash is stored."""

    name: Annotated[str, Field(min_length=1, max_length=200)]
    sender_email: Address
    postal_address: Annotated[str, Field(min_length=5, max_length=500)]
    sender_name: Annotated[HeaderText, Field(min_length=1, max_length=200)] | None = None
    rate_limit_per_hour: Annotated[int, Field(ge=1, le=1_000_000)] | None = None


class WorkspaceArgs(_Args):
    """Name one workspace."""

    workspace_id: UUIDStr


class EngagementMetricsArgs(_Args):
    """Engagement metrics of the emails one circuit execution sent."""

    workspace_id: UUIDStr
    circuit_execution_id: ExecutionId


def _timezone_required(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        raise PydanticCustomError("timezone_required", "the date-time needs a time zone")
    return value


# A bound of a time filter: ISO-8601 text with a time zone.
TimeBound = Annotated[
    Annotated[datetime, Strict(False)] | None,
    BeforeValidator(_schedule_input),
    AfterValidator(_timezone_required),
]
ProviderName = Literal["sendgrid", "resend", "smtp"]


class ProviderHealthArgs(_Args):
    """Each provider's breaker and this workspace's recent attempts with it."""

    workspace_id: UUIDStr
    window_minutes: Annotated[int, Field(ge=1, le=7 * 24 * 60)] = 60


class SendHistoryArgs(_Args):
    """A workspace's sends, newest first, paged; each filter given narrows them."""

    workspace_id: UUIDStr
    client_id: UUIDStr | None = None
    recipient: Address | None = None
    limit: PageLimit = 50
    offset: PageOffset = 0
    status: ExecutionStatus | None = None
    circuit_execution_id: ExecutionId | None = None
    provider: ProviderName | None = None
    created_since: TimeBound = None
    created_before: TimeBound = None


class CrmContextArgs(_Args):
    """`get_crm_context`."""

    workspace_id: UUIDStr
    recipient: Annotated[Address, Field(description="The contact's address (any case)")]
    client_id: Annotated[
        UUIDStr | None, Field(description="The organization the send is for (UUID)")
    ] = None


_CrmText = Annotated[str, Field(min_length=1, max_length=200)]
_CrmTime = Annotated[Annotated[datetime, Strict(False)] | None, AfterValidator(_timezone_required)]


class ContactRow(_Args):
    id: UUIDStr | None = None  # a new one when not given
    email: Address
    lead_stage: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    last_contacted_at: _CrmTime = None


class OrganizationRow(_Args):
    id: Annotated[UUIDStr, Field(description="The client_id sends for it name")]
    name: _CrmText
    service_category: Annotated[str, Field(max_length=120)] | None = None
    location: _CrmText | None = None


class CampaignRow(_Args):
    id: UUIDStr | None = None
    name: _CrmText
    organization_id: UUIDStr | None = None
    historical_engagement: dict[str, Annotated[float, Field(allow_inf_nan=False)]] | None = None
    started_at: _CrmTime = None


class TenantProfileRow(_Args):
    brand_rules: Annotated[dict[str, Any], AfterValidator(_json_object)]


class LoadCrmArgs(_Args):
    """CRM rows for one workspace (`tools.crm_loader.load_crm_rows`)."""

    workspace_id: UUIDStr
    contacts: Annotated[list[ContactRow], Field(max_length=100_000)] = []
    organizations: Annotated[list[OrganizationRow], Field(max_length=100_000)] = []
    campaigns: Annotated[list[CampaignRow], Field(max_length=100_000)] = []
    synthex_tenant_profiles: Annotated[list[TenantProfileRow], Field(max_length=1)] = []


class CircuitResultFields(_Args):
    """One circuit run as upstream reports it (the HTTP API takes the workspace from the key)."""

    circuit_execution_id: ExecutionId
    circuit_id: Annotated[str, AfterValidator(circuit_name)]
    success: bool
    output: Annotated[dict[str, Any], AfterValidator(_json_object)] | None = None


class RecordCircuitResultArgs(CircuitResultFields, _InWorkspace):
    """Log one circuit run; CX06's `output` is the final asset later sends must match."""


class ValidateCircuitsArgs(_Args):
    """Report whether CX01-CX06 all passed for one execution."""

    workspace_id: UUIDStr
    circuit_execution_id: ExecutionId


class ValidateEmailArgs(_Args):
    """Check an address's syntax (and, when configured, its domain's deliverability)."""

    email: Annotated[str, Field(max_length=1000)]


class GetEmailStatusArgs(_Args):
    """Delivery status of one email, by the `email_id` send_email returned."""

    email_id: UUIDStr
    workspace_id: Annotated[
        UUIDStr | None, Field(description="When given, only this workspace's emails are visible")
    ] = None


class SelfCorrectArgs(GetEmailStatusArgs):
    """CX08's decision for a failed email (reschedule, escalate or none), with its reason and
    every self-correction action taken for it."""


# Why an operator did something by hand: recorded with the action.
Note = Annotated[str, Field(min_length=1, max_length=2000)]
# Which workspace key did it: the first 12 hex digits of its SHA-256 (the API fills it in).
KeyFingerprint = Annotated[str, Field(pattern=r"^[0-9a-f]{12}$")]


class SuppressArgs(_Args):
    """Add an address to a workspace's suppression list; with a `note`, recorded as an
    operator's action."""

    workspace_id: UUIDStr
    email: Address
    reason: Literal["bounced", "complained", "unsubscribed"]
    bounce_type: Literal["hard", "soft"] | None = None
    note: Note | None = None
    key_fingerprint: KeyFingerprint | None = None


class ListSuppressionsArgs(_Args):
    """A workspace's suppression entries, newest first, optionally those whose address
    contains `search`."""

    workspace_id: UUIDStr
    search: Annotated[str, Field(min_length=1, max_length=320)] | None = None
    limit: PageLimit = 50
    offset: PageOffset = 0


class RemoveSuppressionArgs(_Args):
    """Lift every entry for an address (recorded, with why)."""

    workspace_id: UUIDStr
    email: Address
    note: Note
    key_fingerprint: KeyFingerprint | None = None


class ListEscalationsArgs(_Args):
    """The sends that need a person, newest first."""

    workspace_id: UUIDStr
    include_acknowledged: bool = False
    limit: PageLimit = 50
    offset: PageOffset = 0


class AcknowledgeEscalationArgs(_Args):
    """Record that a person looked at an escalated send, and what they found."""

    workspace_id: UUIDStr
    email_id: UUIDStr
    note: Note
    key_fingerprint: KeyFingerprint | None = None


class SendAgainArgs(_Args):
    """Send an escalated email again, when its record proves nothing was handed over (every
    provider refused it); the same email, through every check, recorded with why."""

    workspace_id: UUIDStr
    email_id: UUIDStr
    note: Note
    key_fingerprint: KeyFingerprint | None = None


class IsSuppressedArgs(_Args):
    """Whether sends from this workspace to this address are currently blocked."""

    workspace_id: UUIDStr
    email: Address


class ReceiveWebhookArgs(_Args):
    """Verify one provider webhook request and record its events."""

    provider: Annotated[str, Field(max_length=32)]
    headers: dict[str, str]
    body: bytes


class UnsubscribeArgs(_Args):
    """Honour an unsubscribe link's signed token."""

    token: Annotated[str, Field(min_length=1, max_length=2000)]


_CODE_PRIORITY = (
    ErrorCode.MISSING_FIELD,
    ErrorCode.INVALID_INPUT,
    ErrorCode.HEADER_INJECTION,
    ErrorCode.CONTENT_TOO_LARGE,
)


def first_failure(error: ValidationError) -> ToolFailure:
    """The failure to report for a pydantic error, in the order the pipeline checks shape."""
    found: list[tuple[int, ToolFailure]] = []
    for item in error.errors(include_url=False, include_input=False):
        field = ".".join(str(p) for p in item["loc"]) or "arguments"
        kind = item["type"]
        if kind == "missing":
            code = ErrorCode.MISSING_FIELD
        elif kind in (ErrorCode.HEADER_INJECTION.value, ErrorCode.CONTENT_TOO_LARGE.value):
            code = ErrorCode(kind)
        else:
            code = ErrorCode.INVALID_INPUT
        message = f"{field}: {item['msg']}" if kind != "content_too_large" else item["msg"]
        if kind == "missing":
            message = f"{field} is required"
        found.append((_CODE_PRIORITY.index(code), ToolFailure(code, message, field=field)))
    found.sort(key=lambda pair: pair[0])
    return found[0][1]


def parse(model: type[M], arguments: dict[str, Any]) -> M:
    """Validate tool arguments into `model`, or raise the `ToolFailure` to report.

    A None value counts as not given: a required field is then `missing_field`, an optional
    one takes its default.
    """
    try:
        return model.model_validate({k: v for k, v in arguments.items() if v is not None})
    except ValidationError as error:
        raise first_failure(error) from None


class ExecutionDetailArgs(_Args):
    """Everything recorded about one email of a workspace: its circuits, the message as sent,
    every attempt, CX08's decisions, engagement, the group chat and what operators did."""

    workspace_id: UUIDStr
    email_id: UUIDStr


class UpdateWorkspaceArgs(_Args):
    """Change a workspace's hourly limit, sender or postal address (recorded, with why); the
    next send uses them. Only the fields given change; at least one must be."""

    workspace_id: UUIDStr
    sender_email: Address | None = None
    sender_name: Annotated[HeaderText, Field(min_length=1, max_length=200)] | None = None
    postal_address: Annotated[str, Field(min_length=5, max_length=500)] | None = None
    rate_limit_per_hour: Annotated[int, Field(ge=1, le=1_000_000)] | None = None
    note: Note | None = None
    key_fingerprint: KeyFingerprint | None = None

    @model_validator(mode="after")
    def _changes_something(self) -> UpdateWorkspaceArgs:
        if not self.changes():
            raise PydanticCustomError(
                "nothing_to_change",
                "give at least one of sender_email, sender_name, postal_address, "
                "rate_limit_per_hour",
            )
        return self

    def changes(self) -> dict[str, Any]:
        fields = ("sender_email", "sender_name", "postal_address", "rate_limit_per_hour")
        return {name: getattr(self, name) for name in fields if getattr(self, name) is not None}


class EvaluateEngagementArgs(_Args):
    """CX07: evaluate one sent email's engagement against its workspace's recent rates."""

    workspace_id: UUIDStr
    email_id: UUIDStr


class LiftPauseArgs(_Args):
    """An operator lifts the pause a hard complaint rate put on a workspace's sends."""

    workspace_id: UUIDStr
    note: Note
    key_fingerprint: KeyFingerprint | None = None
