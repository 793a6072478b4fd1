"""SMTP delivery through Flask-Mail connections, reused from a small idle pool.

Flask-Mail supplies the connection: its settings (`MAIL_*`), connect, STARTTLS or implicit
TLS, and login. Its message layer is not used, for three reasons:
- it writes 7bit bodies it never wraps (a minified HTML body breaks the 998-character line
  limit), so the bytes come from `smtp_mime` beside this module (quoted-printable, CRLF);
- it re-derives what the pipeline already checked (headers, addresses) and resolves the host
  name for a Message-ID on every message, about a tenth of the cost of a send;
- the pipeline rejects CR/LF in every header value itself, including the ones Flask-Mail
  does not check (cc, bcc, extra headers).
Two gaps in its connection are closed here: no socket timeout (Flask-Mail issue #114), and
STARTTLS without certificate verification.
"""

from __future__ import annotations

import logging
import re
import smtplib
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any

from flask_mail import Connection, Mail

from tools import clock
from tools.providers.base import (
    Accepted,
    AmbiguousDeliveryError,
    CommitsWhileConnected,
    OutgoingEmail,
    PermanentProviderError,
    ProviderError,
    RecipientRejectedError,
    RetryableProviderError,
)
from tools.providers.smtp_mime import build_mime

log = logging.getLogger(__name__)

_QUIT_TIMEOUT_SECONDS = 1.0


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


def _command(host: smtplib.SMTP, verb: str, argument: str = "") -> None:
    try:
        host.putcmd(verb, argument)
    except Exception as error:
        raise classify_smtp_error(error) from error


def _reply(host: smtplib.SMTP) -> tuple[int, bytes]:
    try:
        return host.getreply()
    except Exception as error:
        raise classify_smtp_error(error) from error


def data_payload(message: bytes) -> bytes:
    """`message` as it follows DATA: every line that starts with "." gets another (RFC 5321
    4.5.2), so no line ends the data early; then the "." line. (smtplib's `data` does the
    same with a regular expression, at several times the cost.)"""
    stuffed = message.replace(b"\n.", b"\n..")
    if stuffed.startswith(b"."):
        stuffed = b"." + stuffed
    if not stuffed.endswith(b"\r\n"):
        stuffed += b"\r\n"
    return stuffed + b".\r\n"


def _nothing_to_commit() -> None:
    """The commit of a send made outside the pipeline (a provider used on its own)."""


# "No such user" (RFC 5321: 550 mailbox unavailable, 551 user not local, 553 mailbox name not
# allowed), unless the enhanced code says it is about policy or the message (5.7.x, 5.6.x),
# which another provider or a later try may get past.
_NO_SUCH_USER = {550, 551, 553}
_NOT_ABOUT_THE_MAILBOX = re.compile(rb"^\s*5\.[67]\.")


def _no_such_user(replies: list[tuple[int, bytes | str]]) -> bool:
    def about_the_mailbox(reply: bytes | str) -> bool:
        text = reply if isinstance(reply, bytes) else reply.encode("utf-8", "replace")
        return not _NOT_ABOUT_THE_MAILBOX.match(text)

    return bool(replies) and all(
        code in _NO_SUCH_USER and about_the_mailbox(reply) for code, reply in replies
    )


def classify_smtp_error(error: Exception) -> ProviderError:
    """Map an smtplib/socket failure onto retryable (4xx, network) or permanent (5xx)."""
    if isinstance(error, smtplib.SMTPRecipientsRefused) and _no_such_user(
        list(error.recipients.values())
    ):
        (code, _), *_ = error.recipients.values()
        return RecipientRejectedError(f"SMTP recipient refused for good ({code})", status_code=code)
    if isinstance(error, smtplib.SMTPDataError) and _no_such_user(
        [(error.smtp_code, error.smtp_error)]
    ):
        return RecipientRejectedError(
            f"SMTP recipient refused for good ({error.smtp_code})", status_code=error.smtp_code
        )
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in error.recipients.values()]
        code = max(codes) if codes else None
        retry = bool(codes) and all(400 <= c < 500 for c in codes)
        cls = RetryableProviderError if retry else PermanentProviderError
        return cls(f"SMTP recipients refused ({', '.join(map(str, codes))})", status_code=code)
    if isinstance(error, smtplib.SMTPAuthenticationError):
        return PermanentProviderError(
            f"SMTP login refused ({error.smtp_code})",
            status_code=error.smtp_code,
            provider_fault=True,
        )
    if isinstance(error, smtplib.SMTPResponseException):
        code = error.smtp_code
        reply = error.smtp_error
        text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
        cls = RetryableProviderError if 400 <= code < 500 else PermanentProviderError
        return cls(f"SMTP {code} {text}".strip(), status_code=code)
    if isinstance(error, smtplib.SMTPNotSupportedError):
        return PermanentProviderError(f"SMTP server does not support this message: {error}")
    if isinstance(error, ssl.SSLCertVerificationError):
        return PermanentProviderError(f"SMTP server certificate rejected: {error.verify_message}")
    if isinstance(error, TimeoutError):
        return RetryableProviderError("SMTP timed out")
    if isinstance(error, smtplib.SMTPServerDisconnected | OSError | smtplib.SMTPException):
        return RetryableProviderError(f"SMTP connection failed: {type(error).__name__}: {error}")
    raise error


class SMTPProvider(CommitsWhileConnected):
    """Sends over SMTP, reusing connections from a small idle pool; reconnects on failure.

    A single-threaded worker keeps one connection; threads share up to `max_idle` idle ones,
    so short-lived request threads do not each leave a connection open. A connection idle for
    longer than `idle_reconnect_seconds` (by `monotonic`) is not trusted: servers drop idle
    sessions, and a fresh one costs less than a failed attempt.
    """

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
        max_idle: int = 4,
        tls_context: ssl.SSLContext | None = None,
        monotonic: Callable[[], float] = time.monotonic,
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
        self._max_idle = max_idle
        self._tls_context = tls_context or ssl.create_default_context()
        self._monotonic = monotonic
        self._idle: list[tuple[_VerifiedTimeoutConnection, float]] = []  # (connection, last use)
        self._lock = threading.Lock()

    @property
    def idle_connections(self) -> int:
        """How many connections wait in the pool for the next send."""
        with self._lock:
            return len(self._idle)

    def send(self, email: OutgoingEmail) -> Accepted:
        return self.send_committing(email, _nothing_to_commit)

    def send_committing(self, email: OutgoingEmail, commit: Callable[[], None]) -> Accepted:
        """`send`, making the send's reservation durable (`commit`) while the server answers
        MAIL FROM, a round trip that delivers nothing: the disk wait of the commit then costs
        no time of its own (7% of a send's time on one thread, bench/send_throughput.py case
        (c); nothing lost with 8 threads on a slow server, bench/serve_latency.py). Without a
        pooled connection it commits before connecting, and before saying QUIT to a stale
        one: each can take up to the timeout, too long to hold the reservation's lock."""
        connection, stale = self._pooled()
        try:
            if connection is None or stale:
                commit()
        except BaseException:
            if connection is not None:
                self._release(connection)  # untouched: still good for the next send
            raise
        finally:
            for old in stale:
                self._close(old)
        if connection is None:
            try:
                connection = self._connect()
            except Exception as error:
                raise classify_smtp_error(error) from error
        try:
            self._transfer(connection, email, commit)
        except BaseException:  # an interrupt too: never pool a connection mid-transaction
            self._close(connection)
            raise
        self._release(connection)
        return Accepted(email.message_id.strip("<>"), 250)

    def _transfer(
        self,
        connection: _VerifiedTimeoutConnection,
        email: OutgoingEmail,
        commit: Callable[[], None],
    ) -> None:
        """smtplib's sendmail in its phases, with local work done in the server's time.

        MAIL FROM, RCPT TO and DATA each cost a round trip. The reservation is committed after
        MAIL FROM is sent and the message is built after DATA is sent, each before the reply
        is read, so both overlap the server's turn instead of adding to it; the next command
        still goes only after the reply, as RFC 5321 asks of a client without PIPELINING. A
        failure leaves a half-open transaction; `send` then closes the connection. Only once
        the message itself has gone is a lost answer ambiguous.
        """
        host = connection.host
        assert host is not None
        # Every address is email-validator's ASCII form (no quoted local part, no CR/LF), so it
        # goes in angle brackets as it is; smtplib's quoteaddr would only parse it again.
        _command(host, "mail", f"FROM:<{email.sender_email}>")
        commit()
        code, reply = _reply(host)
        if code != 250:
            raise classify_smtp_error(smtplib.SMTPSenderRefused(code, reply, email.sender_email))
        refused = self._recipients(host, email)
        _command(host, "data")
        payload = data_payload(build_mime(email, clock.utcnow()))
        code, reply = _reply(host)
        if code != 354:
            raise classify_smtp_error(smtplib.SMTPDataError(code, reply))
        try:
            host.send(payload)
            code, reply = host.getreply()
        except Exception as error:
            raise AmbiguousDeliveryError(
                f"SMTP connection lost after the message was sent ({type(error).__name__}); it "
                "may have been delivered, so it is not sent again"
            ) from error
        if code != 250:
            raise classify_smtp_error(smtplib.SMTPDataError(code, reply))
        if refused:
            log.warning(
                "SMTP server refused some copies",
                extra={"email_id": email.email_id, "refused": sorted(refused)},
            )

    @staticmethod
    def _recipients(host: smtplib.SMTP, email: OutgoingEmail) -> dict[str, tuple[int, bytes]]:
        """RCPT TO for each address; the copies the server refused. Without its main recipient
        the email goes to no one: the transaction is reset and the refusal raised."""
        refused = {}
        for recipient in dict.fromkeys(email.envelope_recipients):
            _command(host, "rcpt", f"TO:<{recipient}>")
            code, reply = _reply(host)
            if code not in (250, 251):
                refused[recipient] = (code, reply)
        if email.to in refused:
            _command(host, "rset")
            _reply(host)
            raise classify_smtp_error(smtplib.SMTPRecipientsRefused({email.to: refused[email.to]}))
        return refused

    def _pooled(
        self,
    ) -> tuple[_VerifiedTimeoutConnection | None, list[_VerifiedTimeoutConnection]]:
        """An idle connection recent enough to trust (or None), and the stale ones to close."""
        stale = []
        connection = None
        now = self._monotonic()
        with self._lock:
            while self._idle:
                candidate, last_used = self._idle.pop()
                if now - last_used <= self._idle_reconnect:
                    connection = candidate
                    break
                stale.append(candidate)
        return connection, stale

    def _connect(self) -> _VerifiedTimeoutConnection:
        connection = _VerifiedTimeoutConnection(self._mail_state, self._timeout, self._tls_context)
        connection.host = connection.configure_host()
        connection.host.ehlo_or_helo_if_needed()
        return connection

    def _release(self, connection: _VerifiedTimeoutConnection) -> None:
        with self._lock:
            if len(self._idle) < self._max_idle:
                self._idle.append((connection, self._monotonic()))
                return
        self._close(connection)

    @staticmethod
    def _close(connection: _VerifiedTimeoutConnection) -> None:
        if connection.host is not None:
            try:
                if connection.host.sock is not None:
                    # QUIT's answer changes nothing: never wait long for it (at shutdown, the
                    # process's exit waits on it).
                    connection.host.sock.settimeout(_QUIT_TIMEOUT_SECONDS)
                connection.host.quit()
            except (smtplib.SMTPException, OSError):
                connection.host.close()
            connection.host = None

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for connection, _ in idle:
            self._close(connection)
