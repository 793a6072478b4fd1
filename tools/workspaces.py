"""Tenants: creating a workspace and issuing its API key (only the key's hash is stored)."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from typing import Any, NamedTuple

from sqlalchemy import bindparam, select

from persistence import Workspace, all_workspaces, workspace_scope
from tools import clock
from tools.addresses import CheckedAddress, check_address
from tools.boundary import tool_function
from tools.errors import ErrorCode, ToolFailure
from tools.operator_actions import record_action
from tools.runtime import get_runtime
from tools.schemas import CreateWorkspaceArgs, UpdateWorkspaceArgs, WorkspaceArgs


def hash_api_key(api_key: str) -> str:
    # Keys are 256-bit random tokens, so a plain SHA-256 is enough (no dictionary to attack).
    return hashlib.sha256(api_key.encode()).hexdigest()


def _sender(address: str) -> CheckedAddress:
    try:
        return check_address(address, check_deliverability=False, field="sender_email")
    except ToolFailure as failure:  # the sender is no recipient: its fault is the input's
        raise ToolFailure(ErrorCode.INVALID_INPUT, failure.message, field="sender_email") from None


def _new_api_key() -> str:
    return "ek_" + secrets.token_urlsafe(32)


@tool_function(CreateWorkspaceArgs)
def create_workspace(args: CreateWorkspaceArgs) -> dict[str, Any]:
    """Create a tenant. Returns its id and API key; the key is shown this once only."""
    runtime = get_runtime()
    sender = _sender(args.sender_email)
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
    with workspace_scope(workspace.id), runtime.sessions.begin() as session:
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


class KeyOwner(NamedTuple):
    workspace_id: str
    name: str


# Run on every authenticated request: built once (an ORM query per call cost more than the
# lookup itself).
_WORKSPACE_OF_KEY = select(Workspace.id, Workspace.name).where(
    Workspace.api_key_hash == bindparam("key_hash")
)


def workspace_for_api_key(api_key: str) -> str | None:
    """The id of the workspace `api_key` belongs to, or None for an unknown key."""
    if not api_key.startswith("ek_") or len(api_key) > 200:
        return None
    owner = owner_of_key_hash(hash_api_key(api_key))
    return owner.workspace_id if owner else None


def owner_of_key_hash(key_hash: str) -> KeyOwner | None:
    """The workspace whose current key has this hash (a console session keeps the hash, not
    the key: a rotated key ends its sessions), or None."""
    # Which workspace is the question: the lookup spans them all.
    with all_workspaces(), get_runtime().reader.connect() as conn:
        row = conn.execute(_WORKSPACE_OF_KEY, {"key_hash": key_hash}).first()
    return KeyOwner(*row) if row else None


@tool_function(WorkspaceArgs)
def rotate_api_key(args: WorkspaceArgs) -> dict[str, Any]:
    """Issue a new API key for a workspace; the old one stops working at once.

    The new key is in the result and shown this once; only its hash is stored.
    """
    api_key = _new_api_key()
    with get_runtime().sessions.begin() as session:
        workspace = session.get(Workspace, args.workspace_id)
        if workspace is None:
            raise ToolFailure(ErrorCode.UNKNOWN_WORKSPACE, "no such workspace")
        workspace.api_key_hash = hash_api_key(api_key)
    return {"success": True, "workspace_id": args.workspace_id, "api_key": api_key}


UPDATE_WORKSPACE = "update_workspace"


@tool_function(WorkspaceArgs)
def get_workspace(args: WorkspaceArgs) -> dict[str, Any]:
    """A workspace's settings (never its key): name, sender, postal address, hourly limit."""
    runtime = get_runtime()
    with runtime.read_sessions() as session:
        workspace = session.get(Workspace, args.workspace_id)
        if workspace is None:
            raise ToolFailure(ErrorCode.UNKNOWN_WORKSPACE, "no such workspace")
        return _settings_of(workspace, runtime.settings.rate_limit_per_hour)


@tool_function(UpdateWorkspaceArgs)
def update_workspace(args: UpdateWorkspaceArgs) -> dict[str, Any]:
    """Change what is given of the sender, the postal address and the hourly limit; the next
    send uses them. Recorded in the operator actions: what changed, from what, and the note."""
    runtime = get_runtime()
    changes = args.changes()
    if "sender_email" in changes:
        changes["sender_email"] = _sender(changes["sender_email"]).wire
    if "postal_address" in changes:
        changes["postal_address"] = changes["postal_address"].strip()
    with runtime.sessions.begin() as session:
        workspace = session.get(Workspace, args.workspace_id, with_for_update=True)
        if workspace is None:
            raise ToolFailure(ErrorCode.UNKNOWN_WORKSPACE, "no such workspace")
        what = "; ".join(
            f"{name}: {getattr(workspace, name)!r} -> {value!r}" for name, value in changes.items()
        )
        for name, value in changes.items():
            setattr(workspace, name, value)
        note = f"{what} ({args.note})" if args.note else what
        record_action(
            session,
            args.workspace_id,
            UPDATE_WORKSPACE,
            args.workspace_id,
            note,
            args.key_fingerprint,
        )
        return {**_settings_of(workspace, runtime.settings.rate_limit_per_hour), "changed": what}


def _settings_of(workspace: Workspace, default_limit: int) -> dict[str, Any]:
    return {
        "success": True,
        "workspace_id": workspace.id,
        "name": workspace.name,
        "sender_email": workspace.sender_email,
        "sender_name": workspace.sender_name,
        "postal_address": workspace.postal_address,
        "rate_limit_per_hour": workspace.rate_limit_per_hour or default_limit,
    }
