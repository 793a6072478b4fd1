"""The per-workspace suppression list: bounced, complained and unsubscribed addresses.

Bounce entries expire after `EMAIL_BOUNCE_SUPPRESSION_DAYS` (30 by default, Postal's figure);
complaints and unsubscribes never do. Addresses are matched case-insensitively.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Row, and_, bindparam, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from persistence import EmailMetrics, Suppression, Workspace, workspace_scope
from tools import clock
from tools.addresses import address_key
from tools.boundary import tool_function
from tools.errors import ErrorCode, ToolFailure
from tools.operator_actions import ADD_SUPPRESSION, record_action
from tools.runtime import get_runtime
from tools.schemas import IsSuppressedArgs, SuppressArgs, UnsubscribeArgs

_sup = Suppression.__table__.c
# An entry blocks while it lasts: a bounce for `bounce_days`, anything else for good. (The send
# checks use the same clause: tools/send/queries.py.)
BLOCKING_SUPPRESSION = (
    _sup.workspace_id == bindparam("workspace_id"),
    _sup.email.in_(bindparam("keys", expanding=True)),
    or_(_sup.reason != "bounced", _sup.suppressed_at >= bindparam("bounce_cutoff")),
)
ACTIVE_SUPPRESSION = select(_sup.email, _sup.reason).where(*BLOCKING_SUPPRESSION).limit(1)
BLOCKED_KEYS = select(_sup.email).where(*BLOCKING_SUPPRESSION)


def active_suppression(
    conn: Connection | Session,
    workspace_id: str,
    keys: Iterable[str],
    *,
    bounce_days: int,
    now: datetime | None = None,
) -> Row[tuple[str, str]] | None:
    """(email, reason) of the first entry that blocks any of `keys` at `now` (default: now)."""
    cutoff = (now or clock.utcnow()) - timedelta(days=bounce_days)
    return conn.execute(
        ACTIVE_SUPPRESSION,
        {"workspace_id": workspace_id, "keys": list(keys), "bounce_cutoff": cutoff},
    ).first()


def blocked_keys(
    conn: Connection, workspace_id: str, keys: Iterable[str], *, bounce_days: int, now: datetime
) -> set[str]:
    """Which of `keys` an entry blocks at `now`, in one query (a batch's recipients)."""
    cutoff = now - timedelta(days=bounce_days)
    found = conn.scalars(
        BLOCKED_KEYS, {"workspace_id": workspace_id, "keys": list(keys), "bounce_cutoff": cutoff}
    )
    return set(found)


def add_suppression(
    session: Session, workspace_id: str, key: str, reason: str, bounce_type: str | None
) -> Suppression:
    """Insert or refresh an entry (a new bounce restarts its 30 days).

    Two requests may add the same entry at once (a one-click POST and a double click): the
    loser of the insert updates the winner's row instead of failing.
    """
    now = clock.utcnow()
    lookup = select(Suppression).where(
        Suppression.workspace_id == workspace_id,
        Suppression.email == key,
        Suppression.reason == reason,
    )
    entry = session.scalars(lookup).first()
    if entry is None:
        entry = Suppression(
            id=str(uuid.uuid4()),
            workspace_id=workspace_id,
            email=key,
            reason=reason,
            bounce_type=bounce_type,
            suppressed_at=now,
            created_at=now,
        )
        try:
            with session.begin_nested():
                session.add(entry)
        except IntegrityError:
            entry = session.scalars(lookup).one()
        else:
            return entry
    entry.suppressed_at = now
    entry.bounce_type = bounce_type
    return entry


@tool_function(SuppressArgs)
def suppress(args: SuppressArgs) -> dict[str, Any]:
    """Block sends from this workspace to `email` (bounced, complained or unsubscribed);
    with a `note`, recorded as an operator's action (which key: `key_fingerprint`)."""
    if args.bounce_type is not None and args.reason != "bounced":
        raise ToolFailure(
            ErrorCode.INVALID_INPUT, "bounce_type is only for reason 'bounced'", field="bounce_type"
        )
    key = address_key(args.email)
    bounce_type = args.bounce_type or ("hard" if args.reason == "bounced" else None)
    with get_runtime().sessions.begin() as session:
        if session.get(Workspace, args.workspace_id) is None:
            raise ToolFailure(ErrorCode.UNKNOWN_WORKSPACE, "no such workspace")
        entry = add_suppression(session, args.workspace_id, key, args.reason, bounce_type)
        if args.note is not None:
            record_action(
                session, args.workspace_id, ADD_SUPPRESSION, key, args.note, args.key_fingerprint
            )
    return {
        "success": True,
        "workspace_id": entry.workspace_id,
        "email": entry.email,
        "reason": entry.reason,
        "bounce_type": entry.bounce_type,
        "suppressed_at": entry.suppressed_at.isoformat(),
    }


def _cannot_tell(arguments: Any, failure: ToolFailure) -> bool:
    return False


@tool_function(IsSuppressedArgs, on_failure=_cannot_tell)
def is_suppressed(args: IsSuppressedArgs) -> bool:
    """Whether sends from this workspace to `email` are blocked now.

    False when it cannot tell (bad input, the database unreachable): the send pipeline makes
    its own check, in the transaction that reserves the send.
    """
    runtime = get_runtime()
    key = address_key(args.email)
    with runtime.read_sessions() as session:
        entry = active_suppression(
            session, args.workspace_id, [key], bounce_days=runtime.settings.bounce_suppression_days
        )
    return entry is not None


@tool_function(UnsubscribeArgs)
def describe_unsubscribe(args: UnsubscribeArgs) -> dict[str, Any]:
    """What an unsubscribe link would do, without doing it (for the confirmation page).

    `{success, workspace_id, workspace_name, email, already_unsubscribed}`, or a failure
    saying why the link is not valid.
    """
    runtime = get_runtime()
    workspace_id, email, _ = runtime.tokens.read(args.token)
    # The signed token names the workspace.
    with workspace_scope(workspace_id), runtime.read_sessions() as session:
        workspace = _token_workspace(session, workspace_id)
        done = session.scalars(
            select(Suppression.id).where(
                Suppression.workspace_id == workspace_id,
                Suppression.email == email,
                Suppression.reason == "unsubscribed",
            )
        ).first()
    return {
        "success": True,
        "workspace_id": workspace_id,
        "workspace_name": workspace.sender_name or workspace.name,
        "email": email,
        "already_unsubscribed": done is not None,
    }


@tool_function(UnsubscribeArgs)
def unsubscribe(args: UnsubscribeArgs) -> dict[str, Any]:
    """Honour an unsubscribe link: suppress its address with reason `unsubscribed`.

    A tampered, expired or foreign token changes nothing and says why.
    """
    runtime = get_runtime()
    workspace_id, email, email_id = runtime.tokens.read(args.token)
    with workspace_scope(workspace_id), runtime.sessions.begin() as session:
        _token_workspace(session, workspace_id)
        # The metrics row before the suppression entry: the order webhooks lock them in.
        if email_id is not None:
            now = clock.utcnow()
            session.execute(
                update(EmailMetrics)
                .where(
                    and_(
                        EmailMetrics.execution_id == email_id,
                        EmailMetrics.workspace_id == workspace_id,
                        EmailMetrics.unsubscribed.is_(False),
                    )
                )
                .values(unsubscribed=True, unsubscribed_at=now, collected_at=now)
            )
        add_suppression(session, workspace_id, email, "unsubscribed", None)
    return {"success": True, "workspace_id": workspace_id, "email": email}


def _token_workspace(session: Session, workspace_id: str) -> Workspace:
    """The workspace a verified token names, or the failure that makes its link invalid."""
    workspace = session.get(Workspace, workspace_id)
    if workspace is None:
        raise ToolFailure(
            ErrorCode.INVALID_INPUT,
            "this unsubscribe link is not valid",
            reason="unknown_workspace",
        )
    return workspace
