"""SQLAlchemy 2.x models: the audit trail and the state the send pipeline enforces limits with.

Every tenant-owned row carries `workspace_id`; every query the tools make filters on it.
Timestamps are timezone-aware UTC in Python whatever the database stores.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    Boolean,
    Computed,
    DateTime,
    Enum,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from persistence.states import AttemptOutcome, CorrectionAction, ExecutionStatus


class UTCDateTime(TypeDecorator[datetime]):
    """Stores UTC; always returns aware UTC datetimes (SQLite keeps no zone of its own)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; the audit trail stores aware UTC only")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _uuid_column(**kw: Any) -> Mapped[str]:
    return mapped_column(String(36), **kw)


def _state_column(states: type[StrEnum], length: int, constraint: str) -> Mapped[Any]:
    """A column holding one of `states` (stored as its text, held to it by a CHECK
    constraint named `constraint`); read back as the enum member."""
    return mapped_column(
        Enum(
            states,
            native_enum=False,
            length=length,
            create_constraint=True,
            name=constraint,
            values_callable=lambda members: [member.value for member in members],
            validate_strings=True,
        )
    )


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime,
        dict[str, Any]: JSON,
        list[Any]: JSON,
    }


class Workspace(Base):
    __tablename__ = "workspaces"

    id: Mapped[str] = _uuid_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    sender_email: Mapped[str] = mapped_column(String(320))
    sender_name: Mapped[str | None] = mapped_column(String(200))
    postal_address: Mapped[str] = mapped_column(Text)
    rate_limit_per_hour: Mapped[int | None] = mapped_column(Integer)
    api_key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime]


class CircuitExecutionLog(Base):
    __tablename__ = "circuit_execution_logs"
    __table_args__ = (Index("ix_circuit_logs_execution", "workspace_id", "circuit_execution_id"),)

    id: Mapped[str] = _uuid_column(primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id"))
    circuit_execution_id: Mapped[str] = mapped_column(String(128))
    circuit_id: Mapped[str] = mapped_column(String(64))
    success: Mapped[bool] = mapped_column(Boolean)
    output: Mapped[dict[str, Any] | None]
    # Hash of the content fields of CX06's output: what a later send must match exactly.
    output_hash: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime]


class EmailExecution(Base):
    """One accepted send: seed 001's `email_agent_executions` plus what the pipeline needs."""

    __tablename__ = "email_agent_executions"
    __table_args__ = (
        UniqueConstraint(
            "workspace_id",
            "circuit_execution_id",
            "recipient_key",
            name="uq_execution_once_per_recipient",
        ),
        # Covers the hourly count (recipient_count included): it is read on every send, and
        # a table lookup would walk the row past its bodies' overflow pages.
        Index("ix_executions_rate_window", "workspace_id", "reserved_at", "recipient_count"),
        Index("ix_executions_recipient", "workspace_id", "recipient_key", "reserved_at"),
        Index("ix_executions_due", "status", "scheduled_for"),
        # How a webhook event without the email_id finds its send.
        Index("ix_executions_provider_message", "provider", "provider_message_id"),
    )

    id: Mapped[str] = _uuid_column(primary_key=True)  # the public email_id
    # No single-column indexes on workspace_id or circuit_execution_id: every query names the
    # workspace, and the unique constraint's index leads with (workspace, execution).
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id"))
    circuit_execution_id: Mapped[str] = mapped_column(String(128))
    client_id: Mapped[str] = _uuid_column(index=True)
    recipient: Mapped[str] = mapped_column(String(320))
    # Lower-cased address: suppression, throttling and idempotency ignore case.
    recipient_key: Mapped[str] = mapped_column(String(320))
    # To + cc + bcc: the hourly limit counts recipients, not emails.
    recipient_count: Mapped[int] = mapped_column(Integer, server_default="1")
    cc: Mapped[list[Any]] = mapped_column(JSON, default=list)
    bcc: Mapped[list[Any]] = mapped_column(JSON, default=list)
    subject: Mapped[str] = mapped_column(Text)
    preheader: Mapped[str | None] = mapped_column(Text)
    html_body: Mapped[str] = mapped_column(Text)
    text_body: Mapped[str | None] = mapped_column(Text)
    cta_url: Mapped[str | None] = mapped_column(Text)
    tags: Mapped[list[Any]] = mapped_column(JSON, default=list)
    attachments: Mapped[list[Any]] = mapped_column(JSON, default=list)
    content_hash: Mapped[str] = mapped_column(String(64))
    message_id: Mapped[str] = mapped_column(String(400))
    # How a send moves between these: persistence/states.py.
    status: Mapped[ExecutionStatus] = _state_column(ExecutionStatus, 20, "ck_execution_status")
    sent: Mapped[bool] = mapped_column(Boolean, default=False)
    provider: Mapped[str | None] = mapped_column(String(32))
    provider_message_id: Mapped[str | None] = mapped_column(String(400))
    sent_at: Mapped[datetime | None]
    scheduled_for: Mapped[datetime | None]
    # When the send took its slot in the hourly limit and the recipient throttle.
    reserved_at: Mapped[datetime | None]
    # When a task for it (queued, or scheduled and due) was last handed to the task queue; the
    # dispatcher publishes again what was never published or what the queue may have lost.
    published_at: Mapped[datetime | None]
    attempt_number: Mapped[int] = mapped_column(Integer, default=0)
    retry_count: Mapped[int] = mapped_column(Integer, default=0)
    # Delivery rounds CX08 has added after a total failure (at most one; then it escalates).
    reschedule_count: Mapped[int] = mapped_column(Integer, server_default="0", default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    error_code: Mapped[str | None] = mapped_column(String(40))
    # What the CRM knew of the recipient and the client when the send was accepted (seed
    # 001's CRMContext, `tools/crm_context.py`): for the audit trail; it never changes content.
    crm_context: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class DeliveryAttempt(Base):
    """One call to one provider for one execution (outcome, status code, latency)."""

    __tablename__ = "email_delivery_attempts"

    id: Mapped[str] = _uuid_column(primary_key=True)
    execution_id: Mapped[str] = mapped_column(ForeignKey("email_agent_executions.id"), index=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id"))
    provider: Mapped[str] = mapped_column(String(32))
    attempt_number: Mapped[int] = mapped_column(Integer)
    outcome: Mapped[AttemptOutcome] = _state_column(AttemptOutcome, 20, "ck_attempt_outcome")
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    latency_ms: Mapped[float] = mapped_column()
    created_at: Mapped[datetime]


class SentMessage(Base):
    """The message of one delivery round as it was handed to the providers: its headers (as
    the SMTP provider writes them, less Date and the MIME boundary, which each attempt makes
    anew; never Bcc), both bodies as rendered (footer and unsubscribe link included), the
    files attached, and the content hash of the asset it was composed from."""

    __tablename__ = "sent_messages"

    id: Mapped[str] = _uuid_column(primary_key=True)
    execution_id: Mapped[str] = mapped_column(ForeignKey("email_agent_executions.id"), index=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id"))
    # The execution's reschedule_count when it was composed: 0, then 1 after CX08 rescheduled.
    delivery_round: Mapped[int] = mapped_column(Integer)
    headers: Mapped[list[Any]]  # [name, value] pairs, in the order they go out
    text_body: Mapped[str] = mapped_column(Text)
    html_body: Mapped[str] = mapped_column(Text)
    attachments: Mapped[list[Any]]  # {filename, content_type, size}
    content_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]


class EmailMetrics(Base):
    __tablename__ = "email_agent_metrics"

    id: Mapped[str] = _uuid_column(primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id"), index=True)
    execution_id: Mapped[str] = mapped_column(ForeignKey("email_agent_executions.id"), unique=True)
    circuit_execution_id: Mapped[str] = mapped_column(String(128), index=True)
    provider_message_id: Mapped[str | None] = mapped_column(String(400), index=True)
    provider: Mapped[str | None] = mapped_column(String(32))
    delivered: Mapped[bool] = mapped_column(Boolean, default=False)
    delivered_at: Mapped[datetime | None]
    bounced: Mapped[bool] = mapped_column(Boolean, default=False)
    bounce_type: Mapped[str | None] = mapped_column(String(20))
    bounced_at: Mapped[datetime | None]
    opened: Mapped[bool] = mapped_column(Boolean, default=False)
    opened_at: Mapped[datetime | None]
    clicked: Mapped[bool] = mapped_column(Boolean, default=False)
    clicked_at: Mapped[datetime | None]
    unsubscribed: Mapped[bool] = mapped_column(Boolean, default=False)
    unsubscribed_at: Mapped[datetime | None]
    complained: Mapped[bool] = mapped_column(Boolean, default=False)
    complained_at: Mapped[datetime | None]
    collected_at: Mapped[datetime | None]  # when a provider event last changed these metrics
    created_at: Mapped[datetime]


class Suppression(Base):
    __tablename__ = "email_suppression_list"
    __table_args__ = (
        UniqueConstraint("workspace_id", "email", "reason", name="uq_suppression_entry"),
    )

    id: Mapped[str] = _uuid_column(primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id"))
    email: Mapped[str] = mapped_column(String(320))  # lower-cased
    reason: Mapped[str] = mapped_column(String(20))  # bounced | complained | unsubscribed
    bounce_type: Mapped[str | None] = mapped_column(String(20))  # hard | soft
    suppressed_at: Mapped[datetime]
    created_at: Mapped[datetime]


class BrandGuardSignal(Base):
    """A workspace's complaint or unsubscribe rate crossing a threshold (seed 001, CAN-SPAM
    point 3), for CX05 upstream to tighten on. An open `hard` complaint signal pauses the
    workspace's new sends (when the guard is on) until an operator lifts it."""

    __tablename__ = "brand_guard_signals"
    __table_args__ = (Index("ix_brand_guard_open", "workspace_id", "kind", "level", "lifted_at"),)

    id: Mapped[str] = _uuid_column(primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id"))
    kind: Mapped[str] = mapped_column(String(20))  # complaint_rate | unsubscribe_rate
    level: Mapped[str] = mapped_column(String(10))  # warn | hard
    rate: Mapped[float] = mapped_column()
    sends: Mapped[int] = mapped_column(Integer)
    events: Mapped[int] = mapped_column(Integer)
    window_days: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime]
    lifted_at: Mapped[datetime | None]
    lifted_by: Mapped[str | None] = mapped_column(String(12))  # the key's fingerprint
    lift_note: Mapped[str | None] = mapped_column(Text)


class OperatorAction(Base):
    """What an operator did by hand, when, with which workspace key (its fingerprint: the
    first 12 hex digits of the key's SHA-256, never the key) and why."""

    __tablename__ = "operator_actions"
    __table_args__ = (Index("ix_operator_actions_subject", "workspace_id", "action", "subject"),)

    id: Mapped[str] = _uuid_column(primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id"))
    # acknowledge_escalation | send_again | add_suppression | remove_suppression
    action: Mapped[str] = mapped_column(String(40))
    subject: Mapped[str] = mapped_column(String(400))  # an email id, or an address
    note: Mapped[str] = mapped_column(Text)
    key_fingerprint: Mapped[str | None] = mapped_column(String(12))
    created_at: Mapped[datetime]


class ProviderEvent(Base):
    """A verified provider webhook event, stored raw; `dedup_key` makes redelivery harmless.

    The normalised fields beside the payload are what folding into the metrics reads. An event
    that names no send this service knows yet stays unlinked (no workspace) until a later pass
    finds its send.
    """

    __tablename__ = "provider_events"
    __table_args__ = (
        UniqueConstraint("provider", "dedup_key", name="uq_provider_event"),
        # The few events still waiting for their send, for the worker's pass.
        Index(
            "ix_provider_events_waiting",
            "received_at",
            postgresql_where=text("execution_id IS NULL"),
            sqlite_where=text("execution_id IS NULL"),
        ),
    )

    id: Mapped[str] = _uuid_column(primary_key=True)
    provider: Mapped[str] = mapped_column(String(32))
    dedup_key: Mapped[str] = mapped_column(String(400))
    event_type: Mapped[str] = mapped_column(String(40))
    # delivered | bounced | opened | clicked | unsubscribed | complained | other
    kind: Mapped[str] = mapped_column(String(20), server_default="other")
    occurred_at: Mapped[datetime | None]
    bounce_type: Mapped[str | None] = mapped_column(String(20))  # hard | soft
    recipient: Mapped[str | None] = mapped_column(String(320))
    # What the event says it is about: the email_id and workspace_id the send put in it, and
    # the provider's message id. It is linked only to a send of the workspace it names.
    email_ref: Mapped[str | None] = mapped_column(String(64), index=True)
    workspace_claim: Mapped[str | None] = mapped_column(String(64))
    provider_message_id: Mapped[str | None] = mapped_column(String(400), index=True)
    # Set once linked to its send (and counted in that send's metrics); None while waiting.
    workspace_id: Mapped[str | None] = mapped_column(ForeignKey("workspaces.id"), index=True)
    execution_id: Mapped[str | None] = mapped_column(ForeignKey("email_agent_executions.id"))
    payload: Mapped[dict[str, Any]]
    received_at: Mapped[datetime]


class SelfCorrectionAction(Base):
    """A CX08 decision with the inputs it was taken on and why."""

    __tablename__ = "self_correction_actions"

    id: Mapped[str] = _uuid_column(primary_key=True)
    workspace_id: Mapped[str | None] = mapped_column(ForeignKey("workspaces.id"), index=True)
    execution_id: Mapped[str | None] = mapped_column(ForeignKey("email_agent_executions.id"))
    action: Mapped[CorrectionAction] = _state_column(CorrectionAction, 40, "ck_correction_action")
    reason: Mapped[str] = mapped_column(Text)
    inputs: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]


class ProviderBreaker(Base):
    """CX08's circuit breaker for one provider, shared by every worker through the database.

    Failures are counted in a window that starts with the first failure; reaching the
    threshold opens the breaker until `open_until`. After that the provider is tried again:
    a success closes the breaker, a failure opens it for another cool-down.
    """

    __tablename__ = "provider_breakers"

    provider: Mapped[str] = mapped_column(String(32), primary_key=True)
    state: Mapped[str] = mapped_column(String(10))  # closed | open
    failures: Mapped[int] = mapped_column(Integer)
    window_started_at: Mapped[datetime | None]
    open_until: Mapped[datetime | None]
    updated_at: Mapped[datetime]


class AgentTranscript(Base):
    """One group-chat run, message by message: who said what, which tool ran with which
    arguments and what it returned. Linked to the execution it sent, if it got that far."""

    __tablename__ = "agent_transcripts"

    id: Mapped[str] = _uuid_column(primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id"), index=True)
    circuit_execution_id: Mapped[str | None] = mapped_column(String(128), index=True)
    email_id: Mapped[str | None] = mapped_column(
        ForeignKey("email_agent_executions.id"), index=True
    )
    stop_reason: Mapped[str | None] = mapped_column(Text)
    messages: Mapped[list[Any]]
    created_at: Mapped[datetime]


# Read-only CRM context (seed 001, "CRM Context"): Unite-Hub's tables, which this service reads
# (filtered by workspace, in read-only transactions: `tools/crm_context.py`) and never writes;
# `main.py load-crm` fills them for a demo or a test.


class Contact(Base):
    """A recipient as the CRM knows them, found by address (case-insensitive)."""

    __tablename__ = "contacts"
    __table_args__ = (Index("ix_contacts_address", "workspace_id", "email_key"),)

    id: Mapped[str] = _uuid_column(primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id"), index=True)
    email: Mapped[str] = mapped_column(String(320))
    # The address lower-cased, by the database whoever writes the row. A lookup compares it
    # with `=`: under row-level security PostgreSQL cannot use an index on `lower(email)`
    # (`lower` is not leakproof, so it runs only after the policy, on every row).
    email_key: Mapped[str] = mapped_column(String(320), Computed("lower(email)", persisted=True))
    lead_stage: Mapped[str | None] = mapped_column(String(64))
    last_contacted_at: Mapped[datetime | None]


class Organization(Base):
    """A client of the workspace: its id is the `client_id` a send is for."""

    __tablename__ = "organizations"

    id: Mapped[str] = _uuid_column(primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    service_category: Mapped[str | None] = mapped_column(String(120))
    location: Mapped[str | None] = mapped_column(String(200))


class Campaign(Base):
    """A client's campaign; the newest one's engagement is a send's historical engagement."""

    __tablename__ = "campaigns"
    __table_args__ = (
        Index("ix_campaigns_client", "workspace_id", "organization_id", "started_at"),
    )

    id: Mapped[str] = _uuid_column(primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id"), index=True)
    organization_id: Mapped[str | None] = mapped_column(ForeignKey("organizations.id"))
    name: Mapped[str] = mapped_column(String(200))
    historical_engagement: Mapped[dict[str, Any] | None]
    started_at: Mapped[datetime | None]


class TenantProfile(Base):
    """The workspace's brand rules (seed 001 names the table after the Synthex product)."""

    __tablename__ = "synthex_tenant_profiles"

    id: Mapped[str] = _uuid_column(primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id"), unique=True)
    brand_rules: Mapped[dict[str, Any] | None]
