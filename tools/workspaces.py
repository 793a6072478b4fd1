"""Tenants: creating a workspace and issuing its API key (only the key's hash is stored)."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from typing import Any

from sqlalchemy import select

from persistence import Workspace
from tools import clock
from tools.addresses import check_address
from tools.errors import ErrorCode, ToolFailure, failure_result
from tools.runtime import get_runtime
from tools.schemas import CreateWorkspaceArgs, WorkspaceArgs, parse


def hash_api_key(api_key: str) -> str:
    # Keys are 256-bit random tokens, so a plain SHA-256 is enough (no dictionary to attack).
    return hashlib.sha256(api_key.encode()).hexdigest()


def _new_api_key() -> str:
    return "ek_" + secrets.token_urlsafe(32)


def create_workspace(
    name: str,
    sender_email: str,
    postal_address: str,
    sender_name: str | None = None,
    rate_limit_per_hour: int | None = None,
) -> dict[str, Any]:
    """Create a tenant. Returns its id and API key; the key is shown this once only."""
    runtime = get_runtime()
    arguments = {
        "name": name,
        "sender_email": sender_email,
        "postal_address": postal_address,
        "sender_name": sender_name,
        "rate_limit_per_hour": rate_limit_per_hour,
    }
    try:
        args = parse(CreateWorkspaceArgs, arguments)
        sender = check_address(args.sender_email, check_deliverability=False, field="sender_email")
    except ToolFailure as failure:
        if failure.code is ErrorCode.INVALID_RECIPIENT:
            failure = ToolFailure(ErrorCode.INVALID_INPUT, failure.message, field="sender_email")
        return failure_result(failure)

    api_key = _new_api_key()
    workspace = Workspace(
        id=str(uuid.uuid4()),
        name=args.name,
        sender_email=sender.wire,
        sender_name=args.sender_name,
        postal_address=args.postal_address.strip(),
        rate_limit_per_hour=args.rate_limit_per_hour,
        api_key_hash=hash_api_key(api_key),
        created_at=clock.utcnow(),
    )
    with runtime.sessions() as session, session.begin():
        session.add(workspace)
    return {
        "success": True,
        "workspace_id": workspace.id,
        "api_key": api_key,
        "name": workspace.name,
        "sender_email": workspace.sender_email,
        "sender_name": workspace.sender_name,
        "postal_address": workspace.postal_address,
        "rate_limit_per_hour": workspace.rate_limit_per_hour
        or runtime.settings.rate_limit_per_hour,
        "created_at": workspace.created_at.isoformat(),
    }


def workspace_for_api_key(api_key: str) -> str | None:
    """The id of the workspace `api_key` belongs to, or None for an unknown key."""
    if not api_key.startswith("ek_") or len(api_key) > 200:
        return None
    with get_runtime().sessions() as session:
        return session.scalar(
            select(Workspace.id).where(Workspace.api_key_hash == hash_api_key(api_key))
        )


def rotate_api_key(workspace_id: str) -> dict[str, Any]:
    """Issue a new API key for a workspace; the old one stops working at once.

    The new key is in the result and shown this once; only its hash is stored.
    """
    runtime = get_runtime()
    try:
        args = parse(WorkspaceArgs, {"workspace_id": workspace_id})
        api_key = _new_api_key()
        with runtime.sessions() as session, session.begin():
            workspace = session.get(Workspace, args.workspace_id)
            if workspace is None:
                raise ToolFailure(ErrorCode.UNKNOWN_WORKSPACE, "no such workspace")
            workspace.api_key_hash = hash_api_key(api_key)
    except ToolFailure as failure:
        return failure_result(failure)
    return {"success": True, "workspace_id": args.workspace_id, "api_key": api_key}
