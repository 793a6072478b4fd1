"""Circuit results: logging CX01-CX08 runs and deciding whether an execution may send.

The newest log of each circuit counts (a re-run replaces an earlier failure). When CX06 logged
an output, its content hash binds the execution to exactly that asset.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from sqlalchemy import Connection, bindparam, select
from sqlalchemy.orm import Session

from persistence import CircuitExecutionLog, Workspace
from tools import clock
from tools.boundary import tool_function
from tools.errors import ErrorCode, ToolFailure, failure_result
from tools.runtime import get_runtime
from tools.schemas import (
    REQUIRED_CIRCUITS,
    FinalAsset,
    RecordCircuitResultArgs,
    ValidateCircuitsArgs,
    first_failure,
)

GENERATION_CIRCUIT = "CX06_GENERATION_EXECUTION"
_logs = CircuitExecutionLog.__table__.c

# Every circuit's logs for one execution (a few rows; the caller keeps the ones it needs): an
# IN list here would be expanded into the SQL again on every execution. Built once: building
# a statement per send cost more than running it.
CIRCUIT_RESULTS = (
    select(_logs.id, _logs.circuit_id, _logs.success, _logs.output_hash)
    .where(
        _logs.workspace_id == bindparam("workspace_id"),
        _logs.circuit_execution_id == bindparam("circuit_execution_id"),
    )
    .order_by(_logs.created_at, _logs.id)
)
# The same for several executions of one workspace (a batch of stored sends).
CIRCUIT_RESULTS_OF_MANY = (
    select(_logs.circuit_execution_id, _logs.id, _logs.circuit_id, _logs.success, _logs.output_hash)
    .where(
        _logs.workspace_id == bindparam("workspace_id"),
        _logs.circuit_execution_id.in_(bindparam("circuit_execution_ids", expanding=True)),
    )
    .order_by(_logs.created_at, _logs.id)
)
CIRCUIT_OUTPUT = select(_logs.output).where(_logs.id == bindparam("log_id"))


def content_hash(asset: FinalAsset) -> str:
    """SHA-256 over the recipient-visible fields, in a canonical JSON form."""
    canonical = json.dumps(asset.content_fields(), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def asset_from_output(output: dict[str, Any]) -> FinalAsset:
    """CX06's output as a `FinalAsset` (keys the asset does not have are ignored)."""
    known = {k: v for k, v in output.items() if k in FinalAsset.model_fields}
    return FinalAsset.model_validate(known)


@dataclass(frozen=True)
class CircuitState:
    passed: list[str]
    missing: list[str]
    failed: list[str]
    generated_log_id: str | None  # CX06's log holding the output, when it passed with one
    generated_hash: str | None

    @property
    def all_passed(self) -> bool:
        return not self.missing and not self.failed

    def as_dict(self) -> dict[str, Any]:
        return {
            "circuits_passed": self.passed,
            "missing_circuits": self.missing,
            "failed_circuits": self.failed,
            "all_required_passed": self.all_passed,
        }


def circuit_state(
    conn: Connection | Session, workspace_id: str, circuit_execution_id: str
) -> CircuitState:
    """The newest result of each required circuit for one execution of one workspace."""
    rows = conn.execute(
        CIRCUIT_RESULTS,
        {"workspace_id": workspace_id, "circuit_execution_id": circuit_execution_id},
    ).all()
    return _state_of(rows)


def circuit_states(
    conn: Connection, workspace_id: str, circuit_execution_ids: Iterable[str]
) -> dict[str, CircuitState]:
    """`circuit_state` of several executions of one workspace, in one query, by id."""
    wanted = list(dict.fromkeys(circuit_execution_ids))
    rows_of: dict[str, list[Any]] = {execution_id: [] for execution_id in wanted}
    found = conn.execute(
        CIRCUIT_RESULTS_OF_MANY, {"workspace_id": workspace_id, "circuit_execution_ids": wanted}
    )
    for row in found:  # oldest first, as for one execution
        rows_of[row.circuit_execution_id].append(row)
    return {execution_id: _state_of(rows) for execution_id, rows in rows_of.items()}


def _state_of(rows: Sequence[Any]) -> CircuitState:
    """The state of one execution from its circuit logs, oldest first."""
    newest = {row.circuit_id: row for row in rows}  # CX07/CX08 logs too: never looked up
    passed = [c for c in REQUIRED_CIRCUITS if c in newest and newest[c].success]
    failed = [c for c in REQUIRED_CIRCUITS if c in newest and not newest[c].success]
    missing = [c for c in REQUIRED_CIRCUITS if c not in newest]
    # The binding is the newest asset CX06 produced: a later CX06 log without an output must
    # not lift it, or any content could be sent after one more "passed" record.
    # (output_hash is set exactly when CX06 logged an output; the output itself is loaded
    # only for a send that has no asset of its own.)
    generated = [
        row
        for row in rows
        if row.circuit_id == GENERATION_CIRCUIT and row.success and row.output_hash is not None
    ]
    log_id = generated[-1].id if generated else None
    digest = generated[-1].output_hash if generated else None
    return CircuitState(passed, missing, failed, log_id, digest)


def generated_asset(conn: Connection, state: CircuitState) -> FinalAsset | None:
    """CX06's output as a final asset, or None when CX06 logged none."""
    if state.generated_log_id is None:
        return None
    output = conn.scalar(CIRCUIT_OUTPUT, {"log_id": state.generated_log_id})
    return asset_from_output(output)


@tool_function(RecordCircuitResultArgs)
def record_circuit_result(args: RecordCircuitResultArgs) -> dict[str, Any]:
    """Log one circuit run. CX06's `output` must be a valid final asset; it binds later sends."""
    output_hash = None
    if args.circuit_id == GENERATION_CIRCUIT and args.output is not None:
        output_hash = content_hash(_generated_asset(args.output))
    log_row = CircuitExecutionLog(
        id=str(uuid.uuid4()),
        workspace_id=args.workspace_id,
        circuit_execution_id=args.circuit_execution_id,
        circuit_id=args.circuit_id,
        success=args.success,
        output=args.output,
        output_hash=output_hash,
        created_at=clock.utcnow(),
    )
    with get_runtime().sessions.begin() as session:
        if session.get(Workspace, args.workspace_id) is None:
            raise ToolFailure(ErrorCode.UNKNOWN_WORKSPACE, "no such workspace")
        session.add(log_row)
    return {
        "success": True,
        "log_id": log_row.id,
        "workspace_id": log_row.workspace_id,
        "circuit_execution_id": log_row.circuit_execution_id,
        "circuit_id": log_row.circuit_id,
        "passed": log_row.success,
        "content_hash": output_hash,
        "created_at": log_row.created_at.isoformat(),
    }


def _generated_asset(output: dict[str, Any]) -> FinalAsset:
    """CX06's output as the asset it binds, or the failure saying why it is not one."""
    try:
        return asset_from_output(output)
    except ValidationError as error:
        inner = first_failure(error)
        raise ToolFailure(
            inner.code,
            f"CX06 output is not a valid final asset: {inner.message}",
            field=f"output.{inner.details.get('field', '')}",
        ) from None


def _not_validated(arguments: Any, failure: ToolFailure) -> dict[str, Any]:
    return failure_result(failure, all_required_passed=False)


@tool_function(ValidateCircuitsArgs, on_failure=_not_validated)
def validate_circuits(args: ValidateCircuitsArgs) -> dict[str, Any]:
    """Whether CX01-CX06 all passed for this execution, with the lists of what did not."""
    with get_runtime().reader.connect() as conn:
        state = circuit_state(conn, args.workspace_id, args.circuit_execution_id)
    return {
        "workspace_id": args.workspace_id,
        "circuit_execution_id": args.circuit_execution_id,
        **state.as_dict(),
    }
