"""Step 4: the hand-over of a reserved send, and the steps after it.

The composed email goes through the provider chain (SendGrid -> Resend -> SMTP, those
configured; providers whose breaker is open are skipped), then its outcome is recorded, with
the email as it was handed over, and the result built. Used alike by a request that sends
now and by a due scheduled send.

The reservation is committed on the way, before anything could be handed over (see
`tools/providers/chain.py`). What goes wrong before that commit leaves nothing written and
nothing sent, and propagates (a database away: `storage_unavailable` at the tool's boundary).
After it, the row says `sending`, and two faults are told apart:
- the outcome cannot be recorded (the database went away during the delivery): the result
  says `delivery_unrecorded` with what the provider answered, and the row is left for the
  stalled-send sweep;
- anything raised on the way (a bug): whether the message was handed over is unknown, so the
  send is recorded as escalated (`internal_error`), never resent, and the error propagates.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from persistence import begin_unsynced, unavailable
from tools import clock
from tools.boundary import DATABASE_ERRORS
from tools.breakers import cooling_down
from tools.errors import ErrorCode
from tools.providers.base import OutgoingEmail
from tools.providers.chain import DeliveryOutcome
from tools.runtime import Runtime
from tools.send import results
from tools.send.compose import compose
from tools.send.record import HandedOver, Recorded, record, record_batch
from tools.send.reserve import Reserved, release

log = logging.getLogger(__name__)


def deliver(runtime: Runtime, reserved: Reserved) -> dict[str, Any]:
    """Compose, hand over, record: the send result (see the module's note)."""
    email = None
    try:
        email = compose(runtime, reserved)
        outcome = _hand_over(runtime, reserved, email)
    except Exception as error:
        if reserved.commit.done:
            _record_crash(runtime, reserved, email, error)
        raise
    finally:
        reserved.commit.abandon()  # rolls back only a reservation never committed
    try:
        recorded = record(runtime, HandedOver(reserved, outcome, email))
    except DATABASE_ERRORS as error:
        if not unavailable(error):
            raise
        log.error("delivery outcome not recorded", extra=_fields(reserved, outcome.provider))
        return results.unrecorded(reserved, outcome)
    _log(reserved, recorded)
    return results.delivered(reserved, recorded, outcome)


def deliver_batch(
    runtime: Runtime, batch: list[Reserved], go_on: Callable[[], bool]
) -> dict[str, str]:
    """Hand over a batch of claimed stored sends (committed already) one after the other,
    while `go_on()` holds, and record them in one transaction; what became of each, by id
    (`sent`, `delivery_failed`, `deferred`, `unrecorded`).

    Each succeeds or fails alone (the first is always started): a send that raises is
    recorded as escalated (`internal_error`) and the next one goes. Those never started
    (`go_on` said stop) are given back first, in a transaction of their own, for the next
    worker. When the record
    cannot be written, the handed-over rows stay `sending` for the stalled-send sweep, as one
    send's would."""
    handed: list[HandedOver] = []
    for reserved in batch:
        if handed and not go_on():  # the first always goes, as a send of its own would
            break
        handed.append(_hand_over_alone(runtime, reserved))
    left = [reserved.execution for reserved in batch[len(handed) :]]
    if left:  # given back first, on their own: they stay unsent whatever the record does
        with begin_unsynced(runtime.engine) as conn:
            release(conn, left, clock.utcnow())
    try:
        recorded = record_batch(runtime, handed)
    except DATABASE_ERRORS as error:
        if not unavailable(error):
            raise
        log.error("batch outcomes not recorded", extra={"emails": len(handed)})
        return {
            **{execution.id: "deferred" for execution in left},
            **{h.reserved.execution.id: "unrecorded" for h in handed},
        }
    became = {execution.id: "deferred" for execution in left}
    for h, outcome in zip(handed, recorded, strict=True):
        _log(h.reserved, outcome)
        became[h.reserved.execution.id] = _became(outcome)
    return became


def _hand_over(runtime: Runtime, reserved: Reserved, email: OutgoingEmail) -> DeliveryOutcome:
    outcome = runtime.delivery.deliver(
        email,
        commit=reserved.commit,
        skip=cooling_down(reserved.breakers, clock.utcnow()),
        first_attempt_number=reserved.execution.attempt_number + 1,
    )
    reserved.commit()  # no provider did: every one was skipped
    return outcome


def _hand_over_alone(runtime: Runtime, reserved: Reserved) -> HandedOver:
    email = None
    try:
        email = compose(runtime, reserved)
        return HandedOver(reserved, _hand_over(runtime, reserved, email), email)
    except Exception as error:  # a bug: this send is escalated, the batch goes on
        log.exception("delivery crashed", extra=_fields(reserved, None))
        return _crash(reserved, email, error)


def _crash(reserved: Reserved, email: OutgoingEmail | None, error: Exception) -> HandedOver:
    """A hand-over that raised. Whether it was handed over is unknown: ambiguous, so never
    resent; the email, when composing went through, is recorded as what may have gone."""
    outcome = DeliveryOutcome(
        sent=False, ambiguous=True, last_error=f"internal error: {type(error).__name__}"
    )
    return HandedOver(reserved, outcome, email, ErrorCode.INTERNAL_ERROR)


def _record_crash(
    runtime: Runtime, reserved: Reserved, email: OutgoingEmail | None, error: Exception
) -> None:
    """Escalate a send whose delivery raised (`internal_error`): whether it was handed over is
    unknown, so it is never resent. If the database is away too, the row stays `sending` for
    the stalled-send sweep, and the error that matters (the crash) is the one that propagates."""
    try:
        record(runtime, _crash(reserved, email, error))
    except DATABASE_ERRORS as lost:
        log.error(
            "crashed delivery not recorded",
            extra={**_fields(reserved, None), "error_type": type(lost).__name__},
        )


def _became(recorded: Recorded) -> str:
    if recorded.execution.sent:
        return "sent"
    return "delivery_failed" if recorded.decision is not None else "blocked"  # a hard bounce


def _log(reserved: Reserved, recorded: Recorded) -> None:
    fields = _fields(reserved, recorded.execution.provider)
    if recorded.execution.sent:
        log.info("email sent", extra=fields)
    elif recorded.decision is None:
        log.warning("hard bounce at hand-over: recipient suppressed", extra=fields)
    else:
        log.error("delivery failed", extra={**fields, "cx08_action": recorded.decision.action})


def _fields(reserved: Reserved, provider: str | None) -> dict[str, Any]:
    return {
        "email_id": reserved.execution.id,
        "workspace_id": reserved.execution.workspace_id,
        "provider": provider,
    }
