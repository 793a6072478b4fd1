"""The one source of "now" for the tools, so tests can move time (rate windows, expiry)."""

from datetime import UTC, datetime


def utcnow() -> datetime:
    """Current time, timezone-aware UTC."""
    return datetime.now(UTC)
