"""Group-chat transcripts in the audit trail, stored with the execution they concern."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from sqlalchemy import select

from persistence import AgentTranscript, Workspace, workspace_scope
from tools import clock
from tools.clock import iso
from tools.runtime import get_runtime

log = logging.getLogger(__name__)


def store_transcript(
    workspace_id: str,
    circuit_execution_id: str | None,
    email_id: str | None,
    stop_reason: str | None,
    messages: list[dict[str, Any]],
) -> str | None:
    """Keep one run's messages (already JSON-ready); returns the transcript id, or None when
    the workspace does not exist (a run for an unknown workspace has no one to belong to)."""
    transcript_id = str(uuid.uuid4())
    with workspace_scope(workspace_id), get_runtime().sessions.begin() as session:
        if session.get(Workspace, workspace_id) is None:
            log.warning("transcript not stored: unknown workspace")
            return None
        session.add(
            AgentTranscript(
                id=transcript_id,
                workspace_id=workspace_id,
                circuit_execution_id=circuit_execution_id,
                email_id=email_id,
                stop_reason=stop_reason,
                messages=messages,
                created_at=clock.utcnow(),
            )
        )
    return transcript_id


def get_transcripts(
    workspace_id: str, *, email_id: str | None = None, circuit_execution_id: str | None = None
) -> list[dict[str, Any]]:
    """The workspace's transcripts for one email or one circuit execution, oldest first."""
    query = select(AgentTranscript).where(AgentTranscript.workspace_id == workspace_id)
    if email_id is not None:
        query = query.where(AgentTranscript.email_id == email_id)
    if circuit_execution_id is not None:
        query = query.where(AgentTranscript.circuit_execution_id == circuit_execution_id)
    with workspace_scope(workspace_id), get_runtime().read_sessions() as session:
        rows = session.scalars(query.order_by(AgentTranscript.created_at)).all()
    return [
        {
            "transcript_id": row.id,
            "email_id": row.email_id,
            "circuit_execution_id": row.circuit_execution_id,
            "stop_reason": row.stop_reason,
            "created_at": iso(row.created_at),
            "messages": row.messages,
        }
        for row in rows
    ]
