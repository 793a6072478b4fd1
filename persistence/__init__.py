"""Persistence: SQLAlchemy models, engine and sessions, Alembic migrations."""

from persistence.database import (
    begin_unsynced,
    make_engine,
    make_session_factory,
    sqlite_database_path,
    upgrade_to_head,
)
from persistence.models import (
    AgentTranscript,
    Base,
    Campaign,
    CircuitExecutionLog,
    Contact,
    DeliveryAttempt,
    EmailExecution,
    EmailMetrics,
    Organization,
    ProviderBreaker,
    ProviderEvent,
    SelfCorrectionAction,
    Suppression,
    TenantProfile,
    Workspace,
)

__all__ = [
    "AgentTranscript",
    "Base",
    "Campaign",
    "CircuitExecutionLog",
    "Contact",
    "DeliveryAttempt",
    "EmailExecution",
    "EmailMetrics",
    "Organization",
    "ProviderBreaker",
    "ProviderEvent",
    "SelfCorrectionAction",
    "Suppression",
    "TenantProfile",
    "Workspace",
    "begin_unsynced",
    "make_engine",
    "make_session_factory",
    "sqlite_database_path",
    "upgrade_to_head",
]
