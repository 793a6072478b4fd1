"""What tests observe from outside: committed rows, recorded attempts, messages as parsed."""

from __future__ import annotations

import contextlib
import sqlite3
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from sqlalchemy import select

import tools
from persistence import DeliveryAttempt, sqlite_database_path


def committed_statuses(runtime: Any) -> list[str]:
    """The execution statuses another process would read now, oldest first.

    A plain SQLite reader: in WAL mode it never waits for a writer, so it sees only what is
    committed (the project's own sessions begin IMMEDIATE, and would wait for the lock).
    """
    path = sqlite_database_path(runtime.settings.database_url)
    with contextlib.closing(sqlite3.connect(path, timeout=1)) as reader:
        rows = reader.execute("SELECT status FROM email_agent_executions ORDER BY created_at")
        return [status for (status,) in rows]


def attempt_rows(email_id: str) -> list[DeliveryAttempt]:
    """The recorded delivery attempts of one email, in order."""
    with tools.get_runtime().sessions() as session:
        return list(
            session.scalars(
                select(DeliveryAttempt)
                .where(DeliveryAttempt.execution_id == email_id)
                .order_by(DeliveryAttempt.attempt_number)
            )
        )


def parse_message(raw: bytes) -> EmailMessage:
    return message_from_bytes(raw, policy=policy.default)  # type: ignore[return-value]


def body_of(message: EmailMessage, kind: str) -> str:
    """The decoded html or plain part, with the wire's CRLF turned back into LF."""
    part = message.get_body((kind,))
    assert part is not None, f"no {kind} part"
    return part.get_content().replace("\r\n", "\n")
