"""The states the audit trail stores, as types: an execution's status, a delivery attempt's
outcome and a CX08 action. The database holds each to these values with a CHECK constraint.

    request --refused--> (no row; the result says `blocked`)
    request --accepted for later--> scheduled --due, checks pass--> sending
    request --accepted now-------------------------------------> sending
    sending --> sent
            --> scheduled  (CX08 reschedules a first total failure)
            --> escalated  (a second total failure, an unanswered hand-over, a stalled send)
    scheduled --due, a suppression or circuit failure appeared meanwhile--> blocked
    escalated --operator "send again", nothing handed over--> scheduled  (due now; a new round)
"""

from __future__ import annotations

from enum import StrEnum


class ExecutionStatus(StrEnum):
    SCHEDULED = "scheduled"  # waits for `scheduled_for` (asked for, or CX08's one reschedule)
    QUEUED = "queued"  # passed every check and holds its slot; waits for a worker to send it
    SENDING = "sending"  # reserved; a provider may have it (a crash leaves it so: see CX08)
    SENT = "sent"
    BLOCKED = "blocked"  # refused by a check; nothing was sent
    ESCALATED = "escalated"  # needs an operator; sent again only by an operator's "send again"


class AttemptOutcome(StrEnum):
    SENT = "sent"
    TRANSIENT_ERROR = "transient_error"  # worth another try
    PERMANENT_ERROR = "permanent_error"  # this provider will not take this message
    AMBIGUOUS = "ambiguous"  # sent, never answered: it may have been delivered


class CorrectionAction(StrEnum):
    """What CX08 did: with a send (reschedule, escalate) or with a provider (its breaker)."""

    RESCHEDULE = "reschedule"
    ESCALATE = "escalate"
    OPEN_BREAKER = "open_breaker"
    REOPEN_BREAKER = "reopen_breaker"
    CLOSE_BREAKER = "close_breaker"
