"""The one source of "now" for the tools (so tests can move time), and its text form."""

from datetime import UTC, datetime


def utcnow() -> datetime:
    """Current time, timezone-aware UTC."""
    return datetime.now(UTC)


def iso(value: datetime | None) -> str | None:
    """ISO-8601 text for a result, or None."""
    return value.isoformat() if value is not None else None
