"""Step 2: the reservation, one transaction that decides whether a send may go and, if so,
writes its row before any provider can see it.

The transaction holds the workspace's lock (PostgreSQL: its row, `FOR NO KEY UPDATE`;
SQLite: the database write lock, `BEGIN IMMEDIATE`), so two sends of one workspace decide one
after the other on one count, whatever process or machine they run in. In order, the first
that fails being the one reported:
 1. the workspace exists;
 2. circuits CX01-CX06 all passed for the execution, and the asset is the one CX06 logged
    (its content hash), or CX06's own output when the request has none;
 3. a repeat of an earlier send of this (workspace, execution, recipient) returns that send,
    before any check below: a client retrying a request gets its first result back, not a
    throttle error caused by its own first send;
 4. no recipient is suppressed;
 5. when it goes now: the recipient was not sent to within the throttle, and the hourly limit
    has room for every recipient;
 6. the row is written: inserted (`sending`; `queued` for a worker to send; `scheduled` for
    later), or for a due send claimed (`scheduled` -> `sending`) unless another worker claimed
    it first.
The commit waits for the disk: a send is never handed over before its row is durable, so a
crash leaves a trace and the same send is never made twice. A send that goes now is returned
with its transaction still open (`PendingCommit`): it is committed by the delivery, at the
last moment before anything could be handed over (`tools/providers/chain.py`).

A batch of stored sends (`reserve_batch`) is decided by the same steps, in one transaction
committed before any is handed over, reading what it can once for the whole batch
(`_BatchReads`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.engine import RootTransaction
from sqlalchemy.exc import IntegrityError

from persistence import EmailExecution, ExecutionStatus
from tools import clock
from tools.breakers import open_breakers
from tools.circuits import (
    CircuitState,
    circuit_state,
    circuit_states,
    content_hash,
    generated_asset,
)
from tools.errors import ErrorCode, ToolFailure
from tools.runtime import Runtime
from tools.schemas import FinalAsset
from tools.send import queries
from tools.send.checks import CheckedSend
from tools.suppression import active_suppression, blocked_keys


@dataclass(frozen=True)
class WorkspaceView:
    id: str
    sender_email: str
    sender_name: str | None
    postal_address: str
    rate_limit_per_hour: int | None
    sending_paused: bool  # a hard complaint rate (tools/reputation.py)


@dataclass(frozen=True)
class Execution:
    """An execution row as the send path writes and reads it.

    Not the ORM class: building an ORM instance per send cost as much as one of its queries.
    """

    id: str
    workspace_id: str
    circuit_execution_id: str
    recipient: str
    message_id: str
    status: ExecutionStatus
    scheduled_for: datetime | None
    reserved_at: datetime | None
    sent: bool
    provider: str | None
    provider_message_id: str | None
    sent_at: datetime | None
    attempt_number: int
    retry_count: int
    reschedule_count: int
    last_error: str | None
    error_code: str | None
    updated_at: datetime

    @classmethod
    def of(cls, source: EmailExecution | dict[str, Any]) -> Execution:
        """The fields of an ORM row, or of the values a row was inserted with."""
        if isinstance(source, dict):
            return cls(**{name: source[name] for name in _EXECUTION_FIELDS})
        return cls(**{name: getattr(source, name) for name in _EXECUTION_FIELDS})


_EXECUTION_FIELDS = tuple(field.name for field in dataclasses.fields(Execution))


class PendingCommit:
    """The reservation's transaction, still holding the workspace's lock: commit it (once;
    later calls do nothing), or `abandon` it (a rollback, unless it was committed)."""

    def __init__(self, connection: Connection, transaction: RootTransaction) -> None:
        self.connection = connection
        self._transaction = transaction
        self.done = False

    def __call__(self) -> None:
        """Commit and release the connection. What the commit raises propagates; the
        transaction is then rolled back and calling again raises `RuntimeError`."""
        if self.done:
            return
        if self.connection.closed:
            raise RuntimeError("this reservation was rolled back")
        try:
            self._transaction.commit()
        finally:
            self.connection.close()
        self.done = True

    def abandon(self) -> None:
        if not self.done:
            self.connection.close()


@dataclass(frozen=True)
class Reserved:
    """The send may go: its row is written (`sending`; `queued` or `scheduled` when accepted
    for a worker or for later) and becomes durable with `commit`, which the caller must call
    or abandon. `breakers` are the providers cooling down when it was reserved."""

    send: CheckedSend
    execution: Execution
    workspace: WorkspaceView
    circuits: CircuitState
    asset: FinalAsset
    breakers: dict[str, datetime]
    commit: PendingCommit


@dataclass(frozen=True)
class Repeat:
    """The same (workspace, execution, recipient) was sent before: that send's id."""

    email_id: str
    circuits: CircuitState | None


@dataclass(frozen=True)
class Refused:
    """A check failed; nothing was written."""

    failure: ToolFailure
    circuits: CircuitState | None


@dataclass(frozen=True)
class Taken:
    """A due send another worker claimed first; nothing was written."""


Reservation = Reserved | Repeat | Refused | Taken


def reserve(
    runtime: Runtime,
    send: CheckedSend,
    *,
    accept_as: ExecutionStatus = ExecutionStatus.SENDING,
    due: Execution | None = None,
) -> Reservation:
    """Decide on `send` and write its row when it may go (see the module's note).

    `accept_as`: `sending` (it goes now), `queued` (a worker sends it; every check and its slot
    in the limits are taken now) or `scheduled` (it goes at `scheduled_for`: only suppression
    is checked now, the limits when it is due). `due`: a scheduled or queued row being sent
    now, claimed instead of inserted (its checks run again: a suppression or a circuit failure
    that appeared meanwhile still blocks it). Anything but `Reserved` has written nothing; so
    have database errors, which propagate.
    """
    now = clock.utcnow()
    conn = runtime.engine.connect()
    try:
        pending = PendingCommit(conn, conn.begin())
        reads = _Reads(runtime, conn, now)
        decision = _decide(pending, reads, send, accept_as=accept_as, due=due)
        if isinstance(decision, Reserved):
            return decision
    except IntegrityError:
        # Only reachable if rows were written around the lock: still one send.
        conn.close()
        return Repeat(_existing_id(runtime, send), None)
    except BaseException:
        conn.close()
        raise
    conn.close()  # rolls back: nothing to write
    return decision


def reserve_batch(
    runtime: Runtime, stored: list[tuple[CheckedSend, Execution]]
) -> list[Reservation]:
    """`reserve` for a batch of stored sends (each a checked request and its row), in one
    transaction, committed before this returns: a reservation for each, in order.

    The workspaces are locked in one order (by id), so two workers claiming batches at once
    never wait on each other in a cycle. Every `Reserved` shares the committed transaction."""
    now = clock.utcnow()
    in_lock_order = sorted(range(len(stored)), key=lambda i: stored[i][1].workspace_id)
    conn = runtime.engine.connect()
    pending = PendingCommit(conn, conn.begin())
    try:
        reads = _BatchReads(runtime, conn, now, [send for send, _ in stored])
        decided = {}
        for i in in_lock_order:
            send, due = stored[i]
            decided[i] = _decide(pending, reads, send, accept_as=ExecutionStatus.SENDING, due=due)
        pending()
    finally:
        pending.abandon()
    return [decided[i] for i in range(len(stored))]


def release(conn: Connection, claimed: Sequence[Execution], now: datetime) -> None:
    """Give back claimed stored sends that were never started, as they were before the claim:
    `queued` (its slot in the limits kept), or `scheduled` (its slot given back). Marked
    unpublished, so the next dispatch publishes them again."""
    for execution in claimed:
        # Only a scheduled row has a time: a queued one was accepted to go at once.
        scheduled = execution.scheduled_for is not None
        conn.execute(
            queries.CLAIM,
            {
                "b_id": execution.id,
                "from_status": ExecutionStatus.SENDING,
                "status": ExecutionStatus.SCHEDULED if scheduled else ExecutionStatus.QUEUED,
                "reserved_at": None if scheduled else execution.reserved_at,
                "published_at": None,
                "updated_at": now,
            },
        )


def _decide(
    pending: PendingCommit,
    reads: _Reads,
    send: CheckedSend,
    *,
    accept_as: ExecutionStatus,
    due: Execution | None,
) -> Reservation:
    conn, runtime, now = pending.connection, reads.runtime, reads.now
    # A slot in the limits is taken by a send that goes now or is queued, and by a scheduled
    # one when it falls due; a queued one claimed by its worker holds it already.
    takes_slot = (
        due.status is ExecutionStatus.SCHEDULED
        if due
        else accept_as is not ExecutionStatus.SCHEDULED
    )
    workspace = reads.workspace(send.args.workspace_id)
    if workspace is None:
        return Refused(ToolFailure(ErrorCode.UNKNOWN_WORKSPACE, "no such workspace"), None)
    circuits = reads.circuits(workspace.id, send.args.circuit_execution_id)
    approved = _approved_asset(conn, circuits, send.args.final_asset)
    if isinstance(approved, ToolFailure):
        return Refused(approved, circuits)
    asset, digest = approved
    checks = reads.checks(send, limits=takes_slot)
    if checks.existing_id not in (None, send.email_id):  # a due send finds its own row
        return Repeat(checks.existing_id, circuits)
    refusal = _policy_refusal(runtime, conn, send, workspace, checks, now, limits=takes_slot)
    if refusal is not None:
        return Refused(refusal, circuits)
    if due is not None:
        execution = _claim(conn, due, now)
        if execution is None:
            return Taken()
    else:
        execution = _insert(conn, send, workspace, asset, digest, now, status=accept_as)
    goes_now = accept_as is ExecutionStatus.SENDING
    breakers = open_breakers(conn) if checks.breaker_open and goes_now else {}
    return Reserved(send, execution, workspace, circuits, asset, breakers, pending)


@dataclass(frozen=True)
class Checks:
    """What a send is decided on after its circuits (see `queries.SEND_CHECKS`)."""

    existing_id: str | None
    suppressed: bool
    used: int
    recent: int
    breaker_open: bool


class _Reads:
    """What a decision reads inside the reservation's transaction: for one send, each as its
    own query."""

    def __init__(self, runtime: Runtime, conn: Connection, now: datetime) -> None:
        self.runtime, self.conn, self.now = runtime, conn, now

    def workspace(self, workspace_id: str) -> WorkspaceView | None:
        """Load the workspace and hold its lock until the transaction ends."""
        dialect = self.conn.dialect.name
        statement = queries.LOCK_WORKSPACE.get(dialect, queries.LOCK_WORKSPACE["default"])
        found = self.conn.execute(statement, {"workspace_id": workspace_id}).first()
        return WorkspaceView(*found) if found is not None else None

    def circuits(self, workspace_id: str, circuit_execution_id: str) -> CircuitState:
        return circuit_state(self.conn, workspace_id, circuit_execution_id)

    def checks(self, send: CheckedSend, *, limits: bool) -> Checks:
        """`used` and `recent` are counted only when the send takes its slot now."""
        settings, now = self.runtime.settings, self.now
        found = self.conn.execute(
            queries.SEND_CHECKS if limits else queries.SEND_CHECKS_WITHOUT_LIMITS,
            {
                "workspace_id": send.args.workspace_id,
                "circuit_execution_id": send.args.circuit_execution_id,
                "recipient_key": send.recipients.to.key,
                "keys": send.recipients.keys,
                "bounce_cutoff": now - timedelta(days=settings.bounce_suppression_days),
                "hour_ago": now - timedelta(hours=1),
                "throttle_since": now - timedelta(seconds=settings.recipient_throttle_seconds),
            },
        ).one()
        return Checks(*found)


class _BatchReads(_Reads):
    """The same for a batch of stored sends, each read once for the whole batch where no
    decision of the batch can change the answer: a workspace (locked once), the circuits of
    every execution, and, for a send that takes no slot in the limits, its suppressions and
    whether a breaker is open (its own row is the only earlier send of it). The hourly count
    changes with every claim, so a send that takes its slot now (a scheduled one) still
    counts it alone. Each saves a PostgreSQL round trip per send (bench/queue_drain.py)."""

    def __init__(
        self, runtime: Runtime, conn: Connection, now: datetime, sends: list[CheckedSend]
    ) -> None:
        super().__init__(runtime, conn, now)
        self._sends = sends
        self._workspaces: dict[str, WorkspaceView | None] = {}
        self._circuits: dict[tuple[str, str], CircuitState] = {}
        self._blocked: dict[str, set[str]] = {}
        self._breaker_open: bool | None = None

    def workspace(self, workspace_id: str) -> WorkspaceView | None:
        if workspace_id not in self._workspaces:
            self._workspaces[workspace_id] = super().workspace(workspace_id)
        return self._workspaces[workspace_id]

    def circuits(self, workspace_id: str, circuit_execution_id: str) -> CircuitState:
        if (workspace_id, circuit_execution_id) not in self._circuits:
            executions = [s.args.circuit_execution_id for s in self._of(workspace_id)]
            found = circuit_states(self.conn, workspace_id, executions)
            self._circuits.update({(workspace_id, e): state for e, state in found.items()})
        return self._circuits[(workspace_id, circuit_execution_id)]

    def checks(self, send: CheckedSend, *, limits: bool) -> Checks:
        if limits:
            return super().checks(send, limits=True)
        workspace_id = send.args.workspace_id
        if workspace_id not in self._blocked:
            keys = {key for s in self._of(workspace_id) for key in s.recipients.keys}
            days = self.runtime.settings.bounce_suppression_days
            blocked = blocked_keys(self.conn, workspace_id, keys, bounce_days=days, now=self.now)
            self._blocked[workspace_id] = blocked
        if self._breaker_open is None:
            self._breaker_open = bool(self.conn.scalar(queries.ANY_BREAKER_OPEN))
        suppressed = not self._blocked[workspace_id].isdisjoint(send.recipients.keys)
        return Checks(None, suppressed, 0, 0, self._breaker_open)

    def _of(self, workspace_id: str) -> list[CheckedSend]:
        return [s for s in self._sends if s.args.workspace_id == workspace_id]


def _approved_asset(
    conn: Connection, state: CircuitState, requested: FinalAsset | None
) -> tuple[FinalAsset, str] | ToolFailure:
    """The asset to send and its hash, once CX01-CX06 passed and CX06's hash (if any) matches."""
    if not state.all_passed:
        return ToolFailure(
            ErrorCode.CIRCUIT_VALIDATION_FAILED,
            "Circuit validation failed",
            missing_circuits=state.missing,
            failed_circuits=state.failed,
            passed_circuits=state.passed,
        )
    asset = requested or generated_asset(conn, state)
    if asset is None:
        return ToolFailure(
            ErrorCode.MISSING_FIELD,
            "final_asset is required (CX06 logged no output to send)",
            field="final_asset",
        )
    digest = content_hash(asset)
    if state.generated_hash is not None and digest != state.generated_hash:
        return ToolFailure(
            ErrorCode.CONTENT_MISMATCH,
            "final_asset differs from the asset CX06 generated for this execution",
        )
    return asset, digest


def _policy_refusal(
    runtime: Runtime,
    conn: Connection,
    send: CheckedSend,
    workspace: WorkspaceView,
    checks: Checks,
    now: datetime,
    *,
    limits: bool,
) -> ToolFailure | None:
    """A paused workspace, suppression, and (when sending now) the recipient throttle and the
    hourly limit."""
    settings = runtime.settings
    if workspace.sending_paused and settings.complaint_guard:
        return ToolFailure(
            ErrorCode.COMPLAINT_RATE_EXCEEDED,
            "Recipient validation failed: complaint_rate_exceeded (the workspace's complaint "
            f"rate is over {settings.complaint_rate_hard:.2%}; sending is paused until an "
            "operator lifts it)",
        )
    # Which entry blocks, and why, is read only when one does. (On PostgreSQL an entry removed
    # in between is simply gone: nothing blocks any more.)
    keys = send.recipients.keys
    bounce_days = settings.bounce_suppression_days
    entry = (
        active_suppression(conn, workspace.id, keys, bounce_days=bounce_days, now=now)
        if checks.suppressed
        else None
    )
    if entry is not None:
        return ToolFailure(
            ErrorCode.SUPPRESSED,
            f"Recipient validation failed: {entry.reason}_suppressed",
            reason=entry.reason,
            email=entry.email,
        )
    if not limits:
        return None
    if settings.recipient_throttle_seconds > 0 and checks.recent:
        return ToolFailure(
            ErrorCode.RECIPIENT_THROTTLED,
            f"Recipient validation failed: recipient_throttled (one email per "
            f"{settings.recipient_throttle_seconds} s per recipient)",
            retry_after_seconds=settings.recipient_throttle_seconds,
        )
    limit = workspace.rate_limit_per_hour or settings.rate_limit_per_hour
    if checks.used + len(keys) > limit:
        return ToolFailure(
            ErrorCode.RATE_LIMIT_EXCEEDED,
            f"Recipient validation failed: rate_limit_exceeded ({limit} recipients per hour, "
            f"{checks.used} used)",
            limit=limit,
        )
    return None


def _insert(
    conn: Connection,
    send: CheckedSend,
    workspace: WorkspaceView,
    asset: FinalAsset,
    digest: str,
    now: datetime,
    *,
    status: ExecutionStatus,
) -> Execution:
    args, recipients = send.args, send.recipients
    later = status is ExecutionStatus.SCHEDULED
    domain = workspace.sender_email.rpartition("@")[2]
    values: dict[str, Any] = {
        "id": send.email_id,
        "workspace_id": workspace.id,
        "circuit_execution_id": args.circuit_execution_id,
        "client_id": args.client_id,
        "recipient": recipients.to.normalized,
        "recipient_key": recipients.to.key,
        "recipient_count": len(recipients.keys),
        "cc": [a.normalized for a in recipients.cc],
        "bcc": [a.normalized for a in recipients.bcc],
        **asset.model_dump(),
        "attachments": list(args.attachments),
        "content_hash": digest,
        "message_id": f"<{send.email_id}@{domain}>",
        "status": status,
        "sent": False,
        "provider": None,
        "provider_message_id": None,
        "sent_at": None,
        "scheduled_for": args.scheduled_for if later else None,
        # The slot in the hourly limit and the recipient throttle: taken when it goes.
        "reserved_at": None if later else now,
        "attempt_number": 0,
        "retry_count": 0,
        "reschedule_count": 0,
        "last_error": None,
        "error_code": None,
        "crm_context": send.crm_context,
        "created_at": now,
        "updated_at": now,
    }
    conn.execute(queries.INSERT_EXECUTION, values)
    return Execution.of(values)


def _claim(conn: Connection, due: Execution, now: datetime) -> Execution | None:
    """The scheduled (or queued) row, now `sending`, a scheduled one with its slot taken; None
    when another worker claimed it first."""
    values: dict[str, Any] = {"status": ExecutionStatus.SENDING, "updated_at": now}
    if due.status is ExecutionStatus.SCHEDULED:
        values["reserved_at"] = now
    claimed = conn.execute(queries.CLAIM, {"b_id": due.id, "from_status": due.status, **values})
    return dataclasses.replace(due, **values) if claimed.rowcount == 1 else None


def _existing_id(runtime: Runtime, send: CheckedSend) -> str:
    with runtime.reader.connect() as conn:
        found = conn.scalar(
            queries.EXISTING_SEND,
            {
                "workspace_id": send.args.workspace_id,
                "circuit_execution_id": send.args.circuit_execution_id,
                "recipient_key": send.recipients.to.key,
            },
        )
    assert found is not None, "unique violation without a row to show for it"
    return str(found)
