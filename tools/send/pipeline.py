"""`send_email`: the steps of the package, in order, for one request."""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import Mapping
from typing import Any

from persistence import ExecutionStatus
from tools import clock
from tools.boundary import tool_function
from tools.circuits import CircuitState
from tools.crm_context import crm_snapshot
from tools.errors import ToolFailure, echo
from tools.queue import publish_accepted
from tools.runtime import get_runtime
from tools.schemas import SendEmailArgs
from tools.send import results
from tools.send.checks import check_send
from tools.send.deliver import deliver
from tools.send.reserve import Execution, Refused, Repeat, Reserved, Taken, reserve
from tools.status import load_execution

log = logging.getLogger(__name__)


def _refused(
    arguments: Mapping[str, Any], failure: ToolFailure, circuits: CircuitState | None = None
) -> dict[str, Any]:
    log.info(
        "send blocked",
        extra={"workspace_id": echo(arguments.get("workspace_id")), "error_code": failure.code},
    )
    return results.refused(arguments, failure, circuits)


@tool_function(SendEmailArgs, on_failure=_refused)
def send_email(args: SendEmailArgs) -> dict[str, Any]:
    """Send CX06's approved asset to one recipient once every check passes.

    Returns the send result (status sent, scheduled, escalated or blocked; `error` whenever it
    was not sent, a send CX08 rescheduled after a failure included). A repeat of an earlier
    (workspace, execution, recipient) returns the first result with error `duplicate_send` and
    sends nothing. `scheduled_for` in the future accepts it for later (`send_due_emails`);
    `respond_async` accepts it for a worker to send (`deliver_queued_emails`), status `queued`.
    """
    runtime = get_runtime()
    # The providers are built on first use; built here, before the reservation, a chain that
    # cannot be built (an outbox folder that cannot be made) fails the call with nothing
    # claimed, instead of failing a claimed send as if it might have been delivered.
    runtime.delivery  # noqa: B018
    send = check_send(runtime.settings, str(uuid.uuid4()), args)
    crm = crm_snapshot(runtime, args.workspace_id, send.recipients.to.normalized, args.client_id)
    send = dataclasses.replace(send, crm_context=crm)
    accept_as = _accepted_as(args)
    reservation = reserve(runtime, send, accept_as=accept_as)
    match reservation:
        case Refused(failure, circuits):
            return _refused(args.model_dump(), failure, circuits)
        case Repeat(email_id, circuits):
            return results.repeat(Execution.of(load_execution(email_id)), circuits)
        case Reserved() if accept_as is ExecutionStatus.SENDING:
            return deliver(runtime, reservation)
        case Reserved():
            _commit(reservation)
            email_id = reservation.execution.id
            log.info("email accepted", extra={"email_id": email_id, "status": accept_as})
            if accept_as is ExecutionStatus.QUEUED:
                publish_accepted(runtime, email_id)  # after the commit: the outbox's rule
                return results.queued(reservation)
            return results.scheduled(reservation)
        case Taken():
            raise AssertionError("only a due send can be taken by another worker")


def _accepted_as(args: SendEmailArgs) -> ExecutionStatus:
    if args.scheduled_for is not None and args.scheduled_for > clock.utcnow():
        return ExecutionStatus.SCHEDULED
    return ExecutionStatus.QUEUED if args.respond_async else ExecutionStatus.SENDING


def _commit(reservation: Reserved) -> None:
    try:
        reservation.commit()
    finally:
        reservation.commit.abandon()
