"""What an operator does by hand, each action recorded (when, which key, why): acknowledging
an escalated send (sending it again: `tools/send_again.py`), and listing or lifting
suppressions. The console and
the JSON routes call these; they hold no rule of their own."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import delete, exists, func, select
from sqlalchemy.orm import Session, aliased

from persistence import (
    AttemptOutcome,
    DeliveryAttempt,
    EmailExecution,
    ExecutionStatus,
    OperatorAction,
    Suppression,
)
from tools import clock
from tools.addresses import address_key
from tools.boundary import tool_function
from tools.clock import iso
from tools.errors import ErrorCode, ToolFailure
from tools.runtime import get_runtime
from tools.schemas import (
    AcknowledgeEscalationArgs,
    ListEscalationsArgs,
    ListSuppressionsArgs,
    RemoveSuppressionArgs,
)

ACKNOWLEDGE = "acknowledge_escalation"
SEND_AGAIN = "send_again"
ADD_SUPPRESSION = "add_suppression"
REMOVE_SUPPRESSION = "remove_suppression"


def record_action(
    session: Session,
    workspace_id: str,
    action: str,
    subject: str,
    note: str,
    key_fingerprint: str | None,
) -> OperatorAction:
    """Add the record of one operator action to `session`'s transaction."""
    entry = OperatorAction(
        id=str(uuid.uuid4()),
        workspace_id=workspace_id,
        action=action,
        subject=subject,
        note=note,
        key_fingerprint=key_fingerprint,
        created_at=clock.utcnow(),
    )
    session.add(entry)
    return entry


@tool_function(ListSuppressionsArgs)
def list_suppressions(args: ListSuppressionsArgs) -> dict[str, Any]:
    """The workspace's suppression entries, newest first (`search`: part of the address)."""
    sup = Suppression
    filters = [sup.workspace_id == args.workspace_id]
    if args.search is not None:
        filters.append(sup.email.contains(args.search.lower(), autoescape=True))
    with get_runtime().read_sessions() as session:
        total = session.scalar(select(func.count()).select_from(sup).where(*filters))
        rows = session.scalars(
            select(sup)
            .where(*filters)
            .order_by(sup.suppressed_at.desc(), sup.id)
            .limit(args.limit)
            .offset(args.offset)
        ).all()
    entries = [
        {
            "email": row.email,
            "reason": row.reason,
            "bounce_type": row.bounce_type,
            "suppressed_at": iso(row.suppressed_at),
        }
        for row in rows
    ]
    return {"success": True, "suppressions": entries, "total_count": total or 0}


@tool_function(RemoveSuppressionArgs)
def remove_suppression(args: RemoveSuppressionArgs) -> dict[str, Any]:
    """Lift every entry for the address (sends to it may go again); recorded with the note."""
    key = address_key(args.email)
    with get_runtime().sessions.begin() as session:
        removed = session.execute(
            delete(Suppression).where(
                Suppression.workspace_id == args.workspace_id, Suppression.email == key
            )
        ).rowcount
        if not removed:
            raise ToolFailure(ErrorCode.NOT_FOUND, "this address is not suppressed")
        record_action(
            session, args.workspace_id, REMOVE_SUPPRESSION, key, args.note, args.key_fingerprint
        )
    return {"success": True, "email": key, "removed_entries": removed}


@tool_function(ListEscalationsArgs)
def list_escalations(args: ListEscalationsArgs) -> dict[str, Any]:
    """The workspace's escalated sends (CX08 gave up, or the hand-over went unanswered:
    `delivery_unconfirmed`), newest first, each with its acknowledgement if it has one;
    acknowledged ones only with `include_acknowledged`. One sent again and escalated again is
    unacknowledged: its acknowledgement was about the escalation before. `can_send_again`:
    what `send_again` would take (every provider refused it, none may have delivered it)."""
    ex = EmailExecution
    acknowledged = (
        select(OperatorAction.subject).where(*_standing(args.workspace_id)).scalar_subquery()
    )
    filters = [ex.workspace_id == args.workspace_id, ex.status == ExecutionStatus.ESCALATED]
    if not args.include_acknowledged:
        filters.append(ex.id.not_in(acknowledged))
    with get_runtime().read_sessions() as session:
        total = session.scalar(select(func.count()).select_from(ex).where(*filters))
        rows = session.execute(
            select(ex, handed_over(ex.id).label("handed_over"))
            .where(*filters)
            .order_by(ex.updated_at.desc(), ex.id)
            .limit(args.limit)
            .offset(args.offset)
        ).all()
        acks = _acknowledgements(session, args.workspace_id, [row.id for row, _ in rows])
    escalations = [
        {
            "email_id": row.id,
            "recipient": row.recipient,
            "subject": row.subject,
            "error_code": row.error_code,
            "last_error": row.last_error,
            "provider": row.provider,
            "escalated_at": iso(row.updated_at),
            "acknowledged": acks.get(row.id),
            "can_send_again": row.error_code == ErrorCode.ALL_PROVIDERS_FAILED and not handed,
        }
        for row, handed in rows
    ]
    return {"success": True, "escalations": escalations, "total_count": total or 0}


@tool_function(AcknowledgeEscalationArgs)
def acknowledge_escalation(args: AcknowledgeEscalationArgs) -> dict[str, Any]:
    """Record that a person looked at this escalated send and what they found (once)."""
    with get_runtime().sessions.begin() as session:
        # The row's lock makes "once" hold for two requests at the same moment (PostgreSQL;
        # SQLite's write lock does the same).
        execution = session.get(EmailExecution, args.email_id, with_for_update=True)
        if execution is None or execution.workspace_id != args.workspace_id:
            raise ToolFailure(ErrorCode.NOT_FOUND, "no such email in this workspace")
        if execution.status is not ExecutionStatus.ESCALATED:
            raise ToolFailure(
                ErrorCode.INVALID_INPUT, f"this email is {execution.status}, not escalated"
            )
        if _acknowledgements(session, args.workspace_id, [args.email_id]):
            raise ToolFailure(
                ErrorCode.ALREADY_ACKNOWLEDGED, "this escalation was acknowledged already"
            )
        entry = record_action(
            session, args.workspace_id, ACKNOWLEDGE, args.email_id, args.note, args.key_fingerprint
        )
        acknowledged = describe_action(entry)
    return {"success": True, "email_id": args.email_id, "acknowledged": acknowledged}


def handed_over(execution_id: Any) -> Any:
    """Whether a provider took the email, or may have: an attempt of it sent or unanswered.
    Such an email is never sent again (`send_again`)."""
    attempt = DeliveryAttempt
    return exists().where(
        attempt.execution_id == execution_id,
        attempt.outcome.in_((AttemptOutcome.SENT, AttemptOutcome.AMBIGUOUS)),
    )


def _acknowledgements(
    session: Session, workspace_id: str, email_ids: list[str]
) -> dict[str, dict[str, Any]]:
    found = session.scalars(
        select(OperatorAction).where(
            *_standing(workspace_id), OperatorAction.subject.in_(email_ids)
        )
    )
    return {entry.subject: describe_action(entry) for entry in found}


def _standing(workspace_id: str) -> list[Any]:
    """The filter for the acknowledgements that stand: one made before its email was sent
    again was about the escalation before, not about one that came after (a tie counts as
    after: an escalation is shown rather than hidden)."""
    act, again = OperatorAction, aliased(OperatorAction)
    sent_again_since = exists().where(
        again.workspace_id == act.workspace_id,
        again.action == SEND_AGAIN,
        again.subject == act.subject,
        again.created_at >= act.created_at,
    )
    return [act.workspace_id == workspace_id, act.action == ACKNOWLEDGE, ~sent_again_since]


def describe_action(entry: OperatorAction) -> dict[str, Any]:
    return {"at": iso(entry.created_at), "note": entry.note, "key": entry.key_fingerprint}
