"""The process-wide state behind the tool functions: settings, database, providers, signer.

The tools are plain functions (so agents, Flask, notebooks and tests call them the same way),
and they find what they need here. It is built on first use from the environment, or
explicitly with `configure(settings)`; tests configure their own and `shutdown()` after.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from persistence import (
    bypasses_row_security,
    make_engine,
    make_session_factory,
    read_only,
    upgrade_to_head,
)
from settings import Settings, load_settings
from tools.providers.base import Provider
from tools.providers.chain import DeliveryChain
from tools.unsubscribe_tokens import UnsubscribeTokens, resolve_signing_secret
from tools.webhooks.events import WebhookReader

if TYPE_CHECKING:
    from tools.broker import TaskQueue
    from tools.dev_smtp_server import LocalSMTPServer, OutboxHandler

log = logging.getLogger(__name__)


class Runtime:
    """Everything one process needs to run the tools, built from `Settings` (the providers on
    the first send) and closed once.

    `engine`/`sessions` write; `reader`/`read_sessions` only read (their transactions never
    wait for a writer: see `persistence.read_only`). `sleep` is how the delivery chain waits
    between retries, `monotonic` how the SMTP pool ages its connections and a batch of stored
    sends keeps to its time: tests pass their own, to see the waits asked for and to move time.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.monotonic = monotonic
        self.engine: Engine = make_engine(settings.database_url)
        upgrade_to_head(self.engine)
        if bypasses_row_security(self.engine):
            log.warning(
                "the database role is a superuser or has BYPASSRLS: row-level security does "
                "not apply to it, so one workspace's rows are kept from another's by the "
                "code's filters alone; connect as an ordinary role (README: Workspace isolation)"
            )
        self.sessions: sessionmaker[Session] = make_session_factory(self.engine)
        self.reader: Engine = read_only(self.engine)
        self.read_sessions: sessionmaker[Session] = make_session_factory(self.reader)
        self.tokens = UnsubscribeTokens(
            resolve_signing_secret(settings),
            max_age_seconds=settings.unsubscribe_token_max_age_days * 86_400,
        )
        # What is imported only when configured: the webhook verifiers' libraries
        # (cryptography, svix: ~15 MiB), Celery, and the providers' (httpx, Flask-Mail, which
        # loads Flask; aiosmtpd) when the first send needs them. A command that needs none of
        # them starts that much sooner (bench/cli_startup.py).
        self.webhooks: dict[str, WebhookReader] = {}
        if settings.sendgrid_webhook_public_key:
            from tools.webhooks.sendgrid import SendGridWebhook

            self.webhooks["sendgrid"] = SendGridWebhook(settings.sendgrid_webhook_public_key)
        if settings.resend_webhook_secret:
            from tools.webhooks.resend import ResendWebhook

            self.webhooks["resend"] = ResendWebhook(settings.resend_webhook_secret)
        self.dev_server: LocalSMTPServer | None = None
        self.outbox: OutboxHandler | None = None
        # The task queue, when a broker is configured; else `main.py worker` polls the database.
        self.queue: TaskQueue | None = None
        if settings.celery_broker_url:
            from tools.broker import TaskQueue

            self.queue = TaskQueue(settings)
        self._sleep = sleep
        self._delivery: DeliveryChain | None = None
        self._delivery_lock = threading.Lock()  # also what `close` takes
        self._closed = False

    @property
    def delivery(self) -> DeliveryChain:
        """The providers in fallback order, built on first use (the development server
        started then): `status` or `create-workspace` never loads or starts them."""
        chain = self._delivery
        if chain is not None:
            return chain
        with self._delivery_lock:
            if self._closed:  # a thread still working as the process shuts down
                raise RuntimeError("the tools' runtime is closed")
            if self._delivery is None:
                self._delivery = self._build_delivery()
            return self._delivery

    def _build_delivery(self) -> DeliveryChain:
        try:
            providers = self._providers(self.settings, self.monotonic)
        except BaseException:
            self._stop_dev_server()  # so that the next send's attempt starts afresh
            raise
        return DeliveryChain(
            providers,
            max_retries=self.settings.max_retries,
            initial_delay=self.settings.retry_initial_delay,
            max_delay=self.settings.retry_max_delay,
            sleep=self._sleep,
        )

    def _providers(self, settings: Settings, monotonic: Callable[[], float]) -> list[Provider]:
        """The configured providers in fallback order: SendGrid, Resend, SMTP."""
        providers: list[Provider] = []
        if settings.sendgrid_api_key:
            from tools.providers.sendgrid import SendGridProvider

            providers.append(
                SendGridProvider(
                    settings.sendgrid_api_key,
                    settings.sendgrid_api_base_url,
                    timeout=settings.timeout_seconds,
                )
            )
        if settings.resend_api_key:
            from tools.providers.resend import ResendProvider

            providers.append(
                ResendProvider(
                    settings.resend_api_key,
                    settings.resend_api_base_url,
                    timeout=settings.timeout_seconds,
                )
            )
        host, port = settings.smtp_server, settings.smtp_port
        use_tls, use_ssl = settings.smtp_use_tls, settings.smtp_use_ssl
        if settings.uses_dev_smtp_server:
            from tools.dev_smtp_server import LocalSMTPServer, OutboxHandler

            self.outbox = OutboxHandler(settings.outbox_dir)
            self.dev_server = LocalSMTPServer(self.outbox)
            self.dev_server.start()
            host, port, use_tls, use_ssl = "127.0.0.1", self.dev_server.port, False, False
            log.info("embedded development SMTP server started", extra={"port": port})
        if host is not None:
            from tools.providers.smtp import SMTPProvider

            providers.append(
                SMTPProvider(
                    host,
                    port,
                    use_tls=use_tls,
                    use_ssl=use_ssl,
                    username=settings.smtp_username,
                    password=settings.smtp_password,
                    timeout=settings.timeout_seconds,
                    monotonic=monotonic,
                )
            )
        return providers

    def describe_delivery(self) -> list[dict[str, object]]:
        """The delivery chain in fallback order, as an operator may see it: no key or password."""
        settings = self.settings
        chain: list[dict[str, object]] = []
        for name in self.delivery.names:
            entry: dict[str, object] = {"name": name, "configured": True}
            if name == "smtp":
                dev = settings.uses_dev_smtp_server
                entry.update(
                    development_server=dev,
                    host="127.0.0.1" if dev else settings.smtp_server,
                    starttls=settings.smtp_use_tls and not dev,
                    ssl=settings.smtp_use_ssl and not dev,
                )
            chain.append(entry)
        return chain

    def close(self) -> None:
        """Close what it opened; after this, a send fails rather than starting providers."""
        with self._delivery_lock:  # waits for a chain being built, so it is closed too
            self._closed = True
            if self._delivery is not None:
                self._delivery.close()
            self._stop_dev_server()
        if self.queue is not None:
            self.queue.close()
        self.engine.dispose()

    def _stop_dev_server(self) -> None:
        if self.dev_server is not None:
            self.dev_server.stop()
            self.dev_server = self.outbox = None


_current: Runtime | None = None
_lock = threading.Lock()


def configure(
    settings: Settings | None = None, *, unless_current: bool = False, **clocks: Any
) -> Runtime:
    """Replace the runtime with one built from `settings` (default: the environment);
    `clocks` are `Runtime`'s `sleep` and `monotonic`, for tests. With `unless_current`, a
    runtime already built from equal settings is kept instead."""
    global _current
    with _lock:
        if _current is not None:
            if unless_current and _current.settings == settings:
                return _current
            _current.close()
            _current = None
        _current = Runtime(settings or load_settings(), **clocks)
        return _current


def get_runtime() -> Runtime:
    """The current runtime, built from the environment on first use."""
    global _current
    current = _current  # every tool call asks: no lock once it exists
    if current is not None:
        return current
    with _lock:
        if _current is None:
            _current = Runtime(load_settings())
        return _current


def forget_after_fork() -> None:
    """In a forked child: drop the parent's runtime without closing what it holds (the
    parent's connections and sockets stay the parent's); the child builds its own."""
    global _current
    with _lock:
        if _current is not None:
            _current.engine.dispose(close=False)
        _current = None


def shutdown() -> None:
    """Close connections, stop the development server and forget the runtime."""
    global _current
    with _lock:
        if _current is not None:
            _current.close()
            _current = None
