"""SMTP delivery through a Flask-Mail connection, one reused connection per worker thread.

Flask-Mail supplies the connection: its settings (`MAIL_*`), connect, STARTTLS or implicit
TLS, and login. Its message layer is not used, for three reasons:
- it writes 7bit bodies it never wraps (a minified HTML body breaks the 998-character line
  limit), so the bytes come from `tools.mime` (quoted-printable, CRLF);
- it re-derives what the pipeline already checked (headers, addresses) and resolves the host
  name for a Message-ID on every message, about a tenth of the cost of a send;
- the pipeline rejects CR/LF in every header value itself, including the ones Flask-Mail
  does not check (cc, bcc, extra headers).
Two gaps in its connection are closed here: no socket timeout (Flask-Mail issue #114), and
STARTTLS without certificate verification.
"""

from __future__ import annotations

import logging
import smtplib
import ssl
import threading
import time
from typing import Any

from flask_mail import Connection, Mail

from tools import clock
from tools.mime import build_mime
from tools.providers.base import (
    OutgoingEmail,
    PermanentProviderError,
    Provider,
    ProviderError,
    RetryableProviderError,
)

log = logging.getLogger(__name__)


class _VerifiedTimeoutConnection(Connection):
    def __init__(self, mail: Any, timeout: float, tls_context: ssl.SSLContext) -> None:
        super().__init__(mail)
        self._timeout = timeout
        self._tls_context = tls_context

    def configure_host(self) -> smtplib.SMTP:
        mail = self.mail
        host: smtplib.SMTP
        if mail.use_ssl:
            host = smtplib.SMTP_SSL(
                mail.server, mail.port, timeout=self._timeout, context=self._tls_context
            )
        else:
            host = smtplib.SMTP(mail.server, mail.port, timeout=self._timeout)
        if mail.use_tls:
            host.starttls(context=self._tls_context)
        if mail.username and mail.password:
            host.login(mail.username, mail.password)
        return host


def classify_smtp_error(error: Exception) -> ProviderError:
    """Map an smtplib/socket failure onto retryable (4xx, network) or permanent (5xx)."""
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in error.recipients.values()]
        code = max(codes) if codes else None
        retry = bool(codes) and all(400 <= c < 500 for c in codes)
        cls = RetryableProviderError if retry else PermanentProviderError
        return cls(f"SMTP recipients refused ({', '.join(map(str, codes))})", status_code=code)
    if isinstance(error, smtplib.SMTPResponseException):
        code = error.smtp_code
        reply = error.smtp_error
        text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
        cls = RetryableProviderError if 400 <= code < 500 else PermanentProviderError
        return cls(f"SMTP {code} {text}".strip(), status_code=code)
    if isinstance(error, smtplib.SMTPNotSupportedError):
        return PermanentProviderError(f"SMTP server does not support this message: {error}")
    if isinstance(error, TimeoutError):
        return RetryableProviderError("SMTP timed out")
    if isinstance(error, smtplib.SMTPServerDisconnected | OSError | smtplib.SMTPException):
        return RetryableProviderError(f"SMTP connection failed: {type(error).__name__}: {error}")
    raise error


class SMTPProvider(Provider):
    """Sends over SMTP; each worker thread keeps its own connection and reconnects on failure."""

    name = "smtp"

    def __init__(
        self,
        host: str,
        port: int,
        *,
        use_tls: bool = False,
        use_ssl: bool = False,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 30.0,
        idle_reconnect_seconds: float = 30.0,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        self._mail_state = Mail().init_mail(
            {
                "MAIL_SERVER": host,
                "MAIL_PORT": port,
                "MAIL_USE_TLS": use_tls,
                "MAIL_USE_SSL": use_ssl,
                "MAIL_USERNAME": username,
                "MAIL_PASSWORD": password,
            }
        )
        self._timeout = timeout
        self._idle_reconnect = idle_reconnect_seconds
        self._tls_context = tls_context or ssl.create_default_context()
        self._local = threading.local()
        self._open: set[_VerifiedTimeoutConnection] = set()
        self._open_lock = threading.Lock()
        self.endpoint = f"{host}:{port}"

    def send(self, email: OutgoingEmail) -> str:
        raw = build_mime(email, clock.utcnow())
        try:
            connection = self._connection()
            assert connection.host is not None
            refused = connection.host.sendmail(email.sender_email, email.envelope_recipients, raw)
        except Exception as error:
            self._drop_connection()
            raise classify_smtp_error(error) from error
        if refused:
            # Some copies were refused while the main recipient accepted: delivered, but noted.
            log.warning(
                "SMTP server refused some recipients",
                extra={"email_id": email.email_id, "refused": sorted(refused)},
            )
        self._local.last_used = time.monotonic()
        return email.message_id.strip("<>")

    def _connection(self) -> _VerifiedTimeoutConnection:
        connection: _VerifiedTimeoutConnection | None = getattr(self._local, "connection", None)
        idle = time.monotonic() - getattr(self._local, "last_used", 0.0)
        if connection is not None and idle > self._idle_reconnect:
            # Servers drop idle sessions; a fresh one costs less than a failed send and a retry.
            self._drop_connection()
            connection = None
        if connection is None:
            connection = _VerifiedTimeoutConnection(
                self._mail_state, self._timeout, self._tls_context
            )
            connection.host = connection.configure_host()
            self._local.connection = connection
            with self._open_lock:
                self._open.add(connection)
        return connection

    def _drop_connection(self) -> None:
        connection = getattr(self._local, "connection", None)
        self._local.connection = None
        if connection is not None:
            self._close(connection)

    def _close(self, connection: _VerifiedTimeoutConnection) -> None:
        with self._open_lock:
            self._open.discard(connection)
        if connection.host is not None:
            try:
                connection.host.quit()
            except (smtplib.SMTPException, OSError):
                connection.host.close()
            connection.host = None

    def close(self) -> None:
        with self._open_lock:
            connections = list(self._open)
        for connection in connections:
            self._close(connection)
