"""Step 6: the documented shapes of a send's result (README "The tool functions").

Every result has `email_id, status, message, timestamp, recipient, workspace_id,
circuit_execution_id`; `circuit_validation` once the circuits were read; `execution_result`
once a provider was tried; `error` whenever the email was not sent or accepted for later.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from persistence import ExecutionStatus
from tools import clock
from tools.boundary import RETRY_LATER_SECONDS
from tools.circuits import CircuitState
from tools.clock import iso
from tools.errors import ErrorCode, ToolFailure, echo
from tools.providers.chain import DeliveryOutcome
from tools.send.record import Recorded
from tools.send.reserve import Execution, Reserved


# Seed 001's words for a send that failed ("Troubleshooting"); the codes say the same.
def _failure_wording(code: str | None) -> str:
    if code == ErrorCode.ALL_PROVIDERS_FAILED:
        return "All email providers failed"
    return "Email sending failed"


def delivered(reserved: Reserved, recorded: Recorded, outcome: DeliveryOutcome) -> dict[str, Any]:
    """Sent, or failed with CX08's decision (`self_correction`) beside the error."""
    execution, decision = recorded.execution, recorded.decision
    if execution.sent:
        result = _of(execution, reserved.circuits, message=f"Email sent via {execution.provider}")
    elif decision is None:  # a hard bounce at hand-over: no CX08 round can deliver it
        result = _of(
            execution,
            reserved.circuits,
            message="Recipient validation failed: hard_bounce (the receiving server has no such "
            "mailbox); the address is suppressed",
            error={"code": execution.error_code, "message": outcome.last_error},
        )
    else:
        result = _of(
            execution,
            reserved.circuits,
            message=f"{_failure_wording(execution.error_code)}; CX08: {decision.reason}",
            error={"code": execution.error_code, "message": outcome.last_error},
        )
        result["self_correction"] = decision.as_dict()
    if outcome.skipped:
        result["providers_skipped"] = outcome.skipped  # breakers open (CX08)
    return result


def scheduled(reserved: Reserved) -> dict[str, Any]:
    """Accepted for later."""
    when = iso(reserved.execution.scheduled_for)
    return _of(reserved.execution, reserved.circuits, message=f"Email scheduled for {when}")


def queued(reserved: Reserved) -> dict[str, Any]:
    """Accepted, every check passed: a worker sends it (`get_email_status` follows it)."""
    return _of(reserved.execution, reserved.circuits, message="Email queued for sending")


def unrecorded(reserved: Reserved, outcome: DeliveryOutcome) -> dict[str, Any]:
    """Delivered (or failed) at a provider, but the outcome could not be stored: the row stays
    `sending` until the stalled-send sweep escalates it. A retry returns `duplicate_send`."""
    what = f"handed to {outcome.provider}" if outcome.sent else "not delivered"
    as_delivered = dataclasses.replace(
        reserved.execution,
        sent=outcome.sent,
        provider=outcome.last_provider,
        provider_message_id=outcome.provider_message_id,
        attempt_number=reserved.execution.attempt_number + len(outcome.attempts),
        retry_count=reserved.execution.retry_count + outcome.retry_count,
    )
    return _of(
        as_delivered,
        reserved.circuits,
        message=f"The email was {what}, but the outcome could not be recorded",
        error={
            "code": ErrorCode.DELIVERY_UNRECORDED.value,
            "message": f"The email was {what}, and the database could not record it. Do not "
            "send it again: the stalled-send sweep reconciles the row, and a retry of this "
            "request returns this send",
            "retry_after_seconds": RETRY_LATER_SECONDS,
        },
    )


def repeat(execution: Execution, circuits: CircuitState | None) -> dict[str, Any]:
    """The first result of a send made before; nothing was sent again."""
    result = _of(
        execution,
        circuits,
        message="Already handled: this is the first result; nothing was sent again",
        error={
            "code": ErrorCode.DUPLICATE_SEND.value,
            "message": "This execution was already sent to this recipient",
            "email_id": execution.id,
        },
    )
    result["duplicate"] = True
    return result


def refused(
    arguments: Mapping[str, Any], failure: ToolFailure, circuits: CircuitState | None = None
) -> dict[str, Any]:
    """Nothing written, nothing sent (`email_id` is null). Echoes only short text input."""
    result: dict[str, Any] = {
        "email_id": None,
        "status": ExecutionStatus.BLOCKED,
        "message": failure.message,
        "timestamp": clock.utcnow().isoformat(),
        "recipient": echo(arguments.get("recipient")),
        "workspace_id": echo(arguments.get("workspace_id")),
        "circuit_execution_id": echo(arguments.get("circuit_execution_id")),
        "error": failure.error_dict(),
    }
    if circuits is not None:
        result["circuit_validation"] = circuits.as_dict()
    return result


def _of(
    execution: Execution,
    circuits: CircuitState | None,
    *,
    message: str,
    error: dict[str, Any] | None = None,
) -> dict[str, Any]:
    result: dict[str, Any] = {
        "email_id": execution.id,
        "status": execution.status,
        "message": message,
        "timestamp": clock.utcnow().isoformat(),
        "recipient": execution.recipient,
        "workspace_id": execution.workspace_id,
        "circuit_execution_id": execution.circuit_execution_id,
    }
    if execution.scheduled_for is not None:
        result["scheduled_for"] = iso(execution.scheduled_for)
    if execution.attempt_number:
        result["execution_result"] = {
            "sent": execution.sent,
            "provider": execution.provider,
            "provider_message_id": execution.provider_message_id,
            "sent_at": iso(execution.sent_at),
            "retry_count": execution.retry_count,
            "attempts": execution.attempt_number,
        }
    if circuits is not None:
        result["circuit_validation"] = circuits.as_dict()
    if error is not None:
        result["error"] = error
    return result
