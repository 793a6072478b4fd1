"""Hands a message to the configured providers in order, retrying transient failures.

The send's reservation is committed before any provider could hand the message over: by the
provider itself when it can do so during its own protocol (`CommitsWhileConnected`), else
just before it is called, and after any failed attempt, so that the lock it holds never waits
through a backoff or the next provider.

Each provider gets `max_retries` retries with exponential backoff (initial delay, doubling, or
the provider's own wait when longer, capped at `max_delay`) on retryable errors; a permanent
error moves straight to the next provider. An unanswered request (ambiguous) ends the chain:
no other provider is tried, so the email cannot arrive twice. Only a provider that
de-duplicates on the idempotency key is asked again. Every call is recorded as an
`AttemptRecord`, so the audit trail shows what was tried and how it went.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field

from persistence.states import AttemptOutcome
from tools.providers.base import (
    Accepted,
    CommitsWhileConnected,
    OutgoingEmail,
    Provider,
    ProviderError,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AttemptRecord:
    provider: str
    attempt_number: int
    outcome: AttemptOutcome
    status_code: int | None
    error: str | None
    latency_ms: float
    provider_fault: bool = False  # counts toward the provider's circuit breaker


@dataclass
class DeliveryOutcome:
    sent: bool
    provider: str | None = None
    provider_message_id: str | None = None
    # Attempts at a provider after its first one, summed over the chain (this round's share
    # of the row's `retry_count`; `attempts` holds every call).
    retry_count: int = 0
    attempts: list[AttemptRecord] = field(default_factory=list)
    last_error: str | None = None
    # The last request went unanswered: it may have been delivered.
    ambiguous: bool = False
    # A hard bounce at hand-over: the recipient does not exist (no other provider is tried).
    recipient_rejected: bool = False
    skipped: list[str] = field(default_factory=list)  # providers passed over (breaker open)

    @property
    def last_provider(self) -> str | None:
        """The provider that sent it, else the last one tried."""
        return self.provider or (self.attempts[-1].provider if self.attempts else None)


def _send(provider: Provider, email: OutgoingEmail, commit: Callable[[], None]) -> Accepted:
    if isinstance(provider, CommitsWhileConnected):
        return provider.send_committing(email, commit)
    commit()
    return provider.send(email)


def _add_attempt(
    outcome: DeliveryOutcome,
    provider: Provider,
    number: int,
    started: float,
    kind: AttemptOutcome,
    status_code: int | None,
    *,
    error: str | None = None,
    provider_fault: bool = False,
) -> None:
    outcome.attempts.append(
        AttemptRecord(
            provider=provider.name,
            attempt_number=number,
            outcome=kind,
            status_code=status_code,
            error=error,
            latency_ms=(time.perf_counter() - started) * 1000,
            provider_fault=provider_fault,
        )
    )


def _failure_kind(error: ProviderError) -> AttemptOutcome:
    if error.ambiguous:
        return AttemptOutcome.AMBIGUOUS
    return AttemptOutcome.TRANSIENT_ERROR if error.retryable else AttemptOutcome.PERMANENT_ERROR


class DeliveryChain:
    """The providers in fallback order with the retry policy shared by all of them."""

    def __init__(
        self,
        providers: Sequence[Provider],
        *,
        max_retries: int,
        initial_delay: float,
        max_delay: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not providers:
            raise ValueError("at least one provider is required")
        self.providers = list(providers)
        self._max_retries = max_retries
        self._initial_delay = initial_delay
        self._max_delay = max_delay
        self._sleep = sleep

    @property
    def names(self) -> list[str]:
        return [provider.name for provider in self.providers]

    def deliver(
        self,
        email: OutgoingEmail,
        *,
        commit: Callable[[], None],
        skip: Collection[str] = (),
        first_attempt_number: int = 1,
    ) -> DeliveryOutcome:
        """Try each provider not in `skip`; attempt numbers continue from `first_attempt_number`.

        `commit` makes the send's reservation durable (see the module's note); it may be
        called more than once. What it raises propagates: nothing was handed over then.
        """
        outcome = DeliveryOutcome(sent=False)
        for provider in self.providers:
            if provider.name in skip:
                outcome.skipped.append(provider.name)
                continue
            if self._try_provider(provider, email, outcome, first_attempt_number, commit):
                return outcome  # sent, or it may have arrived: nothing more, anywhere
        if not outcome.attempts and outcome.skipped:
            # `skip` holds the providers whose circuit breaker is open (CX08).
            outcome.last_error = f"every provider is cooling down ({', '.join(outcome.skipped)})"
        return outcome

    def _try_provider(
        self,
        provider: Provider,
        email: OutgoingEmail,
        outcome: DeliveryOutcome,
        first: int,
        commit: Callable[[], None],
    ) -> bool:
        """Send through `provider` with its retries, recording each attempt in `outcome`.
        True when the chain must stop here: sent, or an answer that never came."""
        for retry in range(self._max_retries + 1):
            number = first + len(outcome.attempts)
            started = time.perf_counter()
            try:
                accepted = _send(provider, email, commit)
            except ProviderError as error:
                commit()
                self._failed(provider, email, outcome, error, number, started)
                if outcome.ambiguous and not provider.idempotent:
                    return True
                if error.recipient_rejected:  # every provider would meet the same mailbox
                    outcome.recipient_rejected = True
                    return True
                again = error.retryable or error.ambiguous  # ambiguous: same key, no harm
                if not again or retry == self._max_retries:
                    return outcome.ambiguous  # never on to another provider after one
                self._sleep(self._backoff(retry, error.retry_after))
                outcome.retry_count += 1  # every provider's retries, not only the last one's
                continue
            self._succeeded(provider, outcome, accepted, number, started)
            return True
        return False

    @staticmethod
    def _failed(
        provider: Provider,
        email: OutgoingEmail,
        outcome: DeliveryOutcome,
        error: ProviderError,
        number: int,
        started: float,
    ) -> None:
        _add_attempt(
            outcome,
            provider,
            number,
            started,
            _failure_kind(error),
            error.status_code,
            error=str(error),
            provider_fault=error.provider_fault,
        )
        outcome.last_error = f"{provider.name}: {error}"
        outcome.ambiguous = outcome.ambiguous or error.ambiguous
        log.warning(
            "provider attempt failed",
            extra={
                "email_id": email.email_id,
                "workspace_id": email.workspace_id,
                "provider": provider.name,
                "retryable": error.retryable,
                "ambiguous": error.ambiguous,
                "status_code": error.status_code,
            },
        )

    @staticmethod
    def _succeeded(
        provider: Provider,
        outcome: DeliveryOutcome,
        accepted: Accepted,
        number: int,
        started: float,
    ) -> None:
        _add_attempt(outcome, provider, number, started, AttemptOutcome.SENT, accepted.status_code)
        outcome.sent = True
        outcome.ambiguous = False  # the idempotent provider answered at last
        outcome.provider = provider.name
        outcome.provider_message_id = accepted.message_id

    def _backoff(self, retry: int, retry_after: float | None) -> float:
        delay = self._initial_delay * (2**retry)
        if retry_after is not None:
            delay = max(delay, retry_after)
        return min(delay, self._max_delay)

    def close(self) -> None:
        for provider in self.providers:
            provider.close()
