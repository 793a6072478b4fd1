"""What the JSON-over-HTTPS providers share: the client, the POST, and sorting out failures.

A subclass says only how an `OutgoingEmail` looks in its wire format, where its message id
is in a success answer, how its error answers give their message, and anything special in
them. Failure classes:
- not sent (connection refused, connect or pool timeout): retryable;
- 429, 500, 502, 503, 504: retryable, after the provider's own wait where it gives one;
- 401 and 403: permanent, and the provider's fault (our credentials), so CX08 counts them;
- any other 4xx: permanent for this message on this provider;
- sent but unanswered (read timeout, connection dropped mid-request): ambiguous.
"""

from __future__ import annotations

import email.utils
import time
from abc import abstractmethod
from typing import Any

import httpx

from tools.providers.base import (
    Accepted,
    AmbiguousDeliveryError,
    OutgoingEmail,
    PermanentProviderError,
    Provider,
    ProviderError,
    RetryableProviderError,
)

RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
_AUTH_STATUS = frozenset({401, 403})
_MAX_ERROR_TEXT = 300


class HTTPAPIProvider(Provider):
    """A provider behind one JSON `POST`; safe to share between threads (httpx.Client is)."""

    def __init__(
        self,
        api_key: str,
        base_url: str,
        *,
        timeout: float,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._client = httpx.Client(
            base_url=base_url,
            timeout=timeout,
            headers={"Authorization": f"Bearer {api_key}", "User-Agent": "circuit-email/1"},
            follow_redirects=False,
            transport=transport,
        )

    @abstractmethod
    def request(self, email: OutgoingEmail) -> tuple[str, dict[str, Any], dict[str, str]]:
        """(path, JSON body, extra request headers) for `email` in this provider's format."""

    @abstractmethod
    def message_id(self, response: httpx.Response) -> str | None:
        """The provider's id for the accepted message."""

    @abstractmethod
    def error_message(self, body: Any) -> str:
        """The provider's own message in a JSON error answer ("" when it has none)."""

    def send(self, email: OutgoingEmail) -> Accepted:
        path, body, headers = self.request(email)
        try:
            response = self._client.post(path, json=body, headers=headers)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as error:
            raise RetryableProviderError(
                f"{self.name}: could not connect ({type(error).__name__})"
            ) from error
        except (httpx.UnsupportedProtocol, httpx.LocalProtocolError, httpx.ProxyError) as error:
            raise PermanentProviderError(
                f"{self.name}: request could not be made ({type(error).__name__})",
                provider_fault=True,
            ) from error
        except (httpx.TransportError, httpx.DecodingError) as error:
            # The request may have been read and acted on before the answer was lost.
            raise AmbiguousDeliveryError(
                f"{self.name}: no answer after the request was sent ({type(error).__name__}); "
                "it may have been accepted"
            ) from error
        if response.is_success:
            return Accepted(self.message_id(response), response.status_code)
        raise self.classify(response)

    def classify(self, response: httpx.Response) -> ProviderError:
        """The error for a non-2xx answer; subclasses refine the provider's special cases."""
        status = response.status_code
        text = f"{self.name}: HTTP {status} {self.error_text(response)}".rstrip()
        if status in RETRYABLE_STATUS:
            return RetryableProviderError(
                text, status_code=status, retry_after=self.retry_after(response)
            )
        return PermanentProviderError(
            text, status_code=status, provider_fault=status in _AUTH_STATUS
        )

    def retry_after(self, response: httpx.Response) -> float | None:
        """Seconds to wait from `Retry-After` (seconds or an HTTP date), if given."""
        value = response.headers.get("retry-after")
        if value is None:
            return None
        try:
            return max(0.0, float(value))
        except ValueError:
            pass
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(0.0, when.timestamp() - time.time())

    def error_text(self, response: httpx.Response) -> str:
        """The provider's own error message, shortened; never the request (it holds the key)."""
        try:
            body = response.json()
        except ValueError:
            return response.text[:_MAX_ERROR_TEXT]
        return self.error_message(body)[:_MAX_ERROR_TEXT]

    def close(self) -> None:
        self._client.close()
