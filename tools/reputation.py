"""CX05's brand guard (seed 001, "CAN-SPAM Compliance", point 3): a workspace's complaint and
unsubscribe rates over a sliding window, recorded as a signal when they cross a threshold, for
CX05 upstream to tighten on. A complaint rate over the hard threshold pauses the workspace's
new sends (`complaint_rate_exceeded`) until an operator lifts the pause, unless the guard is
off (`EMAIL_COMPLAINT_GUARD=false`: signals only). A lifted signal is not raised again until
new complaints arrive.

Rates count the emails sent in the window and the complaints and unsubscribes that arrived in
it; they are judged only once the window holds `EMAIL_REPUTATION_MIN_SENDS` sends, so a
workspace's first complaint is not a 100% rate. They are evaluated when events fold in (a
webhook, collect-metrics) and when asked for.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import exists, func, select, update
from sqlalchemy.orm import Session

from persistence import BrandGuardSignal, EmailExecution, EmailMetrics, Workspace
from settings import Settings
from tools import clock
from tools.boundary import tool_function
from tools.clock import iso
from tools.errors import ErrorCode, ToolFailure
from tools.operator_actions import record_action
from tools.runtime import get_runtime
from tools.schemas import LiftPauseArgs, WorkspaceArgs

LIFT_PAUSE = "lift_sending_pause"
_sig = BrandGuardSignal


def sending_paused(workspace_id: Any) -> Any:
    """Whether an open hard complaint signal pauses the workspace (an SQL expression)."""
    return exists().where(
        _sig.workspace_id == workspace_id,
        _sig.kind == "complaint_rate",
        _sig.level == "hard",
        _sig.lifted_at.is_(None),
    )


@tool_function(WorkspaceArgs)
def check_reputation(args: WorkspaceArgs) -> dict[str, Any]:
    """The workspace's complaint and unsubscribe rates over the window, their thresholds, the
    signals not lifted (a new one recorded now if a rate crossed a threshold), and whether its
    new sends are paused."""
    runtime = get_runtime()
    with runtime.sessions.begin() as session:
        if session.get(Workspace, args.workspace_id) is None:
            raise ToolFailure(ErrorCode.UNKNOWN_WORKSPACE, "no such workspace")
        rates = evaluate(session, runtime.settings, args.workspace_id, clock.utcnow())
        open_signals = session.scalars(
            select(_sig)
            .where(_sig.workspace_id == args.workspace_id, _sig.lifted_at.is_(None))
            .order_by(_sig.created_at)
        ).all()
        paused = any(s.kind == "complaint_rate" and s.level == "hard" for s in open_signals)
        signals = [_describe(s) for s in open_signals]
    settings = runtime.settings
    return {
        "success": True,
        "workspace_id": args.workspace_id,
        **rates,
        "thresholds": {
            "complaint_rate_warn": settings.complaint_rate_warn,
            "complaint_rate_hard": settings.complaint_rate_hard,
            "unsubscribe_rate_warn": settings.unsubscribe_rate_warn,
            "min_sends": settings.reputation_min_sends,
        },
        "signals": signals,
        "sending_paused": paused and settings.complaint_guard,
    }


@tool_function(LiftPauseArgs)
def lift_sending_pause(args: LiftPauseArgs) -> dict[str, Any]:
    """An operator lifts the workspace's open complaint signals (the pause with them),
    recorded with the note; new sends go again. `not_found` when nothing is open."""
    now = clock.utcnow()
    with get_runtime().sessions.begin() as session:
        lifted = session.execute(
            update(_sig)
            .where(
                _sig.workspace_id == args.workspace_id,
                _sig.kind == "complaint_rate",
                _sig.lifted_at.is_(None),
            )
            .values(lifted_at=now, lifted_by=args.key_fingerprint, lift_note=args.note)
        ).rowcount
        if not lifted:
            raise ToolFailure(ErrorCode.NOT_FOUND, "no complaint signal is open for this workspace")
        record_action(
            session,
            args.workspace_id,
            LIFT_PAUSE,
            args.workspace_id,
            args.note,
            args.key_fingerprint,
        )
    return {"success": True, "workspace_id": args.workspace_id, "lifted_signals": lifted}


def evaluate(session: Session, settings: Settings, workspace_id: str, now: datetime) -> dict:
    """The rates now, recording a signal for each threshold crossed that has none open."""
    since = now - timedelta(days=settings.reputation_window_days)
    sends = session.scalar(
        select(func.count()).where(
            EmailExecution.workspace_id == workspace_id,
            EmailExecution.sent.is_(True),
            EmailExecution.sent_at >= since,
        )
    )
    complaints = _events(session, workspace_id, EmailMetrics.complained_at, since)
    unsubscribes = _events(session, workspace_id, EmailMetrics.unsubscribed_at, since)
    judged = sends >= settings.reputation_min_sends
    complaint_rate = complaints / sends if sends else 0.0
    unsubscribe_rate = unsubscribes / sends if sends else 0.0
    if judged:
        levels = [
            ("complaint_rate", "hard", complaint_rate, complaints, settings.complaint_rate_hard),
            ("complaint_rate", "warn", complaint_rate, complaints, settings.complaint_rate_warn),
            (
                "unsubscribe_rate",
                "warn",
                unsubscribe_rate,
                unsubscribes,
                settings.unsubscribe_rate_warn,
            ),
        ]
        for kind, level, rate, events, threshold in levels:
            if rate > threshold:
                _signal(session, workspace_id, (kind, level, rate, events), sends, settings, now)
    return {
        "window_days": settings.reputation_window_days,
        "sends": sends,
        "complaints": complaints,
        "unsubscribes": unsubscribes,
        "complaint_rate": round(complaint_rate, 6),
        "unsubscribe_rate": round(unsubscribe_rate, 6),
        "judged": judged,
    }


def _events(session: Session, workspace_id: str, at: Any, since: datetime) -> int:
    return session.scalar(
        select(func.count()).where(EmailMetrics.workspace_id == workspace_id, at >= since)
    )


def _signal(
    session: Session,
    workspace_id: str,
    crossing: tuple[str, str, float, int],
    sends: int,
    settings: Settings,
    now: datetime,
) -> None:
    """Record the crossing unless a signal of it stands: one still open, or one an operator
    lifted with as many events as now (a lift holds until new complaints arrive)."""
    kind, level, rate, events = crossing
    since = now - timedelta(days=settings.reputation_window_days)
    latest = session.scalars(
        select(_sig)
        .where(
            _sig.workspace_id == workspace_id,
            _sig.kind == kind,
            _sig.level == level,
            _sig.created_at >= since,
        )
        .order_by(_sig.created_at.desc())
        .limit(1)
    ).first()
    if latest is not None and (latest.lifted_at is None or events <= latest.events):
        return
    session.add(
        BrandGuardSignal(
            id=str(uuid.uuid4()),
            workspace_id=workspace_id,
            kind=kind,
            level=level,
            rate=rate,
            sends=sends,
            events=events,
            window_days=settings.reputation_window_days,
            created_at=now,
        )
    )


def _describe(signal: BrandGuardSignal) -> dict[str, Any]:
    return {
        "kind": signal.kind,
        "level": signal.level,
        "rate": round(signal.rate, 6),
        "sends": signal.sends,
        "events": signal.events,
        "window_days": signal.window_days,
        "at": iso(signal.created_at),
    }
