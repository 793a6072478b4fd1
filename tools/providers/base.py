"""The provider interface: "send this finished message, tell me what happened".

The pipeline builds one `OutgoingEmail` (recipients checked, headers made, content rendered);
a provider only translates it into its wire format, hands it over, and says how it went: an
`Accepted` with the provider's message id, or a `ProviderError` typed as retryable (try again,
maybe elsewhere), permanent (this provider will not take it) or ambiguous (it may have been
delivered). The shape of django-anymail's backends and listmonk's messengers.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str
    data: bytes = field(repr=False)


@dataclass(frozen=True)
class Content:
    """What rendering makes: both bodies, and the headers that carry the unsubscribe token."""

    html: str = field(repr=False)
    text: str = field(repr=False)
    headers: dict[str, str]  # List-Unsubscribe, List-Unsubscribe-Post


@dataclass(frozen=True)
class OutgoingEmail:
    """A finished email, ready for any provider. Every header value here is CR/LF-free.

    Every attempt of one delivery round sends these same bytes, as a provider's idempotency
    key requires.
    """

    email_id: str
    workspace_id: str
    idempotency_key: str  # the same for every attempt of one delivery round
    message_id: str  # RFC 5322 Message-ID, angle brackets included
    sender_email: str
    sender_name: str | None
    to: str
    cc: tuple[str, ...]
    bcc: tuple[str, ...]
    subject: str
    content: Content
    tags: tuple[str, ...] = ()
    attachments: tuple[Attachment, ...] = ()

    @property
    def envelope_recipients(self) -> list[str]:
        return [self.to, *self.cc, *self.bcc]


@dataclass(frozen=True)
class Accepted:
    """The provider took the message. `status_code` is its HTTP or SMTP reply code."""

    message_id: str | None
    status_code: int | None = None


class ProviderError(Exception):
    """A provider did not take the message. `status_code` is the HTTP or SMTP reply code.

    `provider_fault` says the failure is the provider's (overloaded, down, refusing our
    credentials) rather than this message's; only those count toward CX08's circuit breaker.
    """

    retryable: bool = False
    # The provider may have taken the message: trying again elsewhere could deliver it twice.
    ambiguous: bool = False
    # The receiving server says the recipient does not exist: no provider can deliver it.
    recipient_rejected: bool = False

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        retry_after: float | None = None,
        provider_fault: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.retry_after = retry_after
        if provider_fault is None:
            provider_fault = self.retryable or self.ambiguous
        self.provider_fault = provider_fault


class RetryableProviderError(ProviderError):
    """Worth another try: throttling, a server error, a timeout, a dropped connection."""

    retryable = True


class PermanentProviderError(ProviderError):
    """This provider will not take this message as it is; retrying it here is pointless."""

    retryable = False


class RecipientRejectedError(PermanentProviderError):
    """A hard bounce at hand-over: the receiving server refused the recipient for good ("no
    such user": SMTP 550, 551 or 553). Recorded and suppressed as a bounce webhook's would be."""

    recipient_rejected = True


class AmbiguousDeliveryError(ProviderError):
    """The request reached the provider but no answer came back: it may have been delivered.

    Never followed by another provider. Retried only on a provider whose idempotency key makes
    a repeat harmless (`Provider.idempotent`).
    """

    retryable = False
    ambiguous = True


class Provider(ABC):
    """One way of handing a message over. Implementations must be safe to call from threads."""

    name: str
    # True when the provider de-duplicates on `OutgoingEmail.idempotency_key`, so the same
    # request sent again after an unanswered one cannot deliver a second copy.
    idempotent: bool = False

    @abstractmethod
    def send(self, email: OutgoingEmail) -> Accepted:
        """Hand `email` over, or raise `ProviderError` saying why not."""

    def close(self) -> None:  # noqa: B027 - most providers hold nothing to release
        """Release connections. Called once when the runtime shuts down."""


class CommitsWhileConnected(Provider):
    """A provider that can make the send's reservation durable during its own protocol, while
    its server answers a command that delivers nothing (the SMTP provider, while MAIL FROM is
    answered: see `SMTPProvider.send_committing`). Every other provider gets its email after
    the delivery chain has committed."""

    @abstractmethod
    def send_committing(self, email: OutgoingEmail, commit: Callable[[], None]) -> Accepted:
        """`send`, calling `commit` before anything that could hand the message over, and
        before any wait that could be long (connecting). What `commit` raises propagates."""
