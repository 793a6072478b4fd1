"""SMTP delivery through Flask-Mail, one reused connection per worker thread.

Flask-Mail supplies the connection (server, port, STARTTLS/SSL, login), its bad-header check
and its `email_dispatched` signal. Three gaps are closed here:
- no socket timeout (Flask-Mail issue #114): `configure_host` passes `EMAIL_TIMEOUT`;
- STARTTLS without certificate checks: a verifying `ssl.create_default_context()` is used;
- 7bit bodies that are never wrapped: the MIME bytes come from `tools.mime` (quoted-printable,
  CRLF) and are handed to Flask-Mail as they are.
"""

from __future__ import annotations

import logging
import smtplib
import ssl
import threading
import time
from typing import Any

from flask import Flask
from flask_mail import Connection, Mail, Message

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


class _PrebuiltMessage(Message):
    """A Flask-Mail message whose bytes were already built by `tools.mime`."""

    def __init__(self, email: OutgoingEmail, raw: bytes) -> None:
        super().__init__(
            subject=email.subject,
            recipients=[email.to],
            cc=list(email.cc),
            bcc=list(email.bcc),
            sender=email.sender_email,
        )
        self.msgId = email.message_id
        self._raw = raw

    def as_bytes(self) -> bytes:
        return self._raw


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
        self._app = Flask(__name__)  # Flask-Mail reads its settings from an app's config
        self._app.config.update(
            MAIL_SERVER=host,
            MAIL_PORT=port,
            MAIL_USE_TLS=use_tls,
            MAIL_USE_SSL=use_ssl,
            MAIL_USERNAME=username,
            MAIL_PASSWORD=password,
        )
        self._mail_state = Mail(self._app).state
        self._timeout = timeout
        self._idle_reconnect = idle_reconnect_seconds
        self._tls_context = tls_context or ssl.create_default_context()
        self._local = threading.local()
        self._open: set[_VerifiedTimeoutConnection] = set()
        self._open_lock = threading.Lock()
        self.endpoint = f"{host}:{port}"

    def send(self, email: OutgoingEmail) -> str:
        message = _PrebuiltMessage(email, build_mime(email, clock.utcnow()))
        with self._app.app_context():
            try:
                connection = self._connection()
                connection.send(message, envelope_from=email.sender_email)
            except Exception as error:
                self._drop_connection()
                raise classify_smtp_error(error) from error
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
