"""The per-workspace suppression list: bounced, complained and unsubscribed addresses.

Bounce entries expire after `EMAIL_BOUNCE_SUPPRESSION_DAYS` (30 by default, Postal's figure);
complaints and unsubscribes never do. Addresses are matched case-insensitively.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from email_validator import EmailNotValidError
from email_validator import validate_email as _validate
from sqlalchemy import Connection, Row, and_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from persistence import EmailMetrics, Suppression, Workspace
from tools import clock, send_queries
from tools.errors import ErrorCode, ToolFailure, failure_result
from tools.runtime import get_runtime
from tools.schemas import IsSuppressedArgs, SuppressArgs, UnsubscribeArgs, parse


def address_key(email: str) -> str:
    """The lower-cased normalised form addresses are matched by, or `ToolFailure`."""
    try:
        info = _validate(email, check_deliverability=False)
    except EmailNotValidError as error:
        raise ToolFailure(ErrorCode.INVALID_INPUT, f"email: {error}", field="email") from None
    return info.normalized.lower()


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
        send_queries.ACTIVE_SUPPRESSION,
        {"workspace_id": workspace_id, "keys": list(keys), "bounce_cutoff": cutoff},
    ).first()


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


def suppress(
    workspace_id: str, email: str, reason: str, bounce_type: str | None = None
) -> dict[str, Any]:
    """Block sends from this workspace to `email` (bounced, complained or unsubscribed)."""
    runtime = get_runtime()
    arguments = {
        "workspace_id": workspace_id,
        "email": email,
        "reason": reason,
        "bounce_type": bounce_type,
    }
    try:
        args = parse(SuppressArgs, arguments)
        if args.bounce_type is not None and args.reason != "bounced":
            raise ToolFailure(
                ErrorCode.INVALID_INPUT,
                "bounce_type is only for reason 'bounced'",
                field="bounce_type",
            )
        key = address_key(args.email)
        with runtime.sessions() as session, session.begin():
            if session.get(Workspace, args.workspace_id) is None:
                raise ToolFailure(ErrorCode.UNKNOWN_WORKSPACE, "no such workspace")
            entry = add_suppression(
                session,
                args.workspace_id,
                key,
                args.reason,
                args.bounce_type or ("hard" if args.reason == "bounced" else None),
            )
    except ToolFailure as failure:
        return failure_result(failure)
    return {
        "success": True,
        "workspace_id": entry.workspace_id,
        "email": entry.email,
        "reason": entry.reason,
        "bounce_type": entry.bounce_type,
        "suppressed_at": entry.suppressed_at.isoformat(),
    }


def is_suppressed(workspace_id: str, email: str) -> bool:
    """Whether sends from this workspace to `email` are blocked now (False for bad input)."""
    runtime = get_runtime()
    try:
        args = parse(IsSuppressedArgs, {"workspace_id": workspace_id, "email": email})
        key = address_key(args.email)
    except ToolFailure:
        return False
    with runtime.sessions() as session:
        entry = active_suppression(
            session,
            args.workspace_id,
            [key],
            bounce_days=runtime.settings.bounce_suppression_days,
        )
    return entry is not None


def describe_unsubscribe(token: str) -> dict[str, Any]:
    """What an unsubscribe link would do, without doing it (for the confirmation page).

    `{success, workspace_id, workspace_name, email, already_unsubscribed}`, or a failure
    saying why the link is not valid.
    """
    runtime = get_runtime()
    try:
        args = parse(UnsubscribeArgs, {"token": token})
        workspace_id, email, _ = runtime.tokens.read(args.token)
        with runtime.sessions() as session:
            workspace = session.get(Workspace, workspace_id)
            if workspace is None:
                raise ToolFailure(
                    ErrorCode.INVALID_INPUT,
                    "this unsubscribe link is not valid",
                    reason="unknown_workspace",
                )
            done = session.scalars(
                select(Suppression.id).where(
                    Suppression.workspace_id == workspace_id,
                    Suppression.email == email,
                    Suppression.reason == "unsubscribed",
                )
            ).first()
    except ToolFailure as failure:
        return failure_result(failure)
    return {
        "success": True,
        "workspace_id": workspace_id,
        "workspace_name": workspace.sender_name or workspace.name,
        "email": email,
        "already_unsubscribed": done is not None,
    }


def unsubscribe(token: str) -> dict[str, Any]:
    """Honour an unsubscribe link: suppress its address with reason `unsubscribed`.

    A tampered, expired or foreign token changes nothing and says why.
    """
    runtime = get_runtime()
    try:
        args = parse(UnsubscribeArgs, {"token": token})
        workspace_id, email, email_id = runtime.tokens.read(args.token)
        with runtime.sessions() as session, session.begin():
            if session.get(Workspace, workspace_id) is None:
                raise ToolFailure(
                    ErrorCode.INVALID_INPUT,
                    "this unsubscribe link is not valid",
                    reason="unknown_workspace",
                )
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
    except ToolFailure as failure:
        return failure_result(failure)
    return {"success": True, "workspace_id": workspace_id, "email": email}
