"""The record of CX08's actions: each decision with the inputs it was taken on and why.

Written by the decisions after a failed delivery (`tools/self_correction.py`), the circuit
breakers (`tools/breakers.py`) and the stalled-send sweep (`tools/stalled_sends.py`); read back
by `get_email_status` and `self_correct`.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select

from persistence import CorrectionAction, SelfCorrectionAction
from tools.clock import iso
from tools.providers.chain import AttemptRecord

_actions = SelfCorrectionAction.__table__


def log_action(
    conn: Connection,
    workspace_id: str,
    execution_id: str,
    action: CorrectionAction,
    reason: str,
    inputs: dict[str, Any],
    now: datetime,
) -> None:
    conn.execute(
        insert(_actions).values(
            id=str(uuid.uuid4()),
            workspace_id=workspace_id,
            execution_id=execution_id,
            action=action,
            reason=reason,
            inputs=inputs,
            created_at=now,
        )
    )


def actions_for(conn: Connection, execution_id: str) -> list[dict[str, Any]]:
    """The CX08 actions taken for one execution, oldest first."""
    rows = conn.execute(
        select(_actions.c.action, _actions.c.reason, _actions.c.inputs, _actions.c.created_at)
        .where(_actions.c.execution_id == execution_id)
        .order_by(_actions.c.created_at)
    )
    return [{"action": a, "reason": r, "inputs": i, "created_at": iso(at)} for a, r, i, at in rows]


def attempt_summary(attempt: AttemptRecord) -> dict[str, Any]:
    """An attempt as a decision's inputs record it."""
    return {
        "provider": attempt.provider,
        "attempt_number": attempt.attempt_number,
        "outcome": attempt.outcome,
        "status_code": attempt.status_code,
    }
