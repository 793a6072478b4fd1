"""A real SMTP server for tests: aiosmtpd on 127.0.0.1 that records or refuses messages."""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tools.dev_smtp_server import LocalSMTPServer

DROP = "drop the connection"
HANG_UP = "answer, then drop the connection"
ACCEPT = "<accept as usual>"  # a scripted RCPT reply that lets the address through


@dataclass(frozen=True)
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    mail_options: list[str]
    tls: bool  # the session was encrypted (STARTTLS or implicit TLS)


class RecordingHandler:
    """Keeps every accepted message; `replies` scripts the answers to the next DATA commands."""

    def __init__(self) -> None:
        self.messages: list[Received] = []
        self.replies: deque[str] = deque()
        # Scripted answers to the next MAIL commands; DROP closes the connection instead.
        self.mail_replies: deque[str] = deque()
        # Scripted answers to the next RCPT commands; HANG_UP accepts, then closes the connection.
        self.rcpt_replies: deque[str] = deque()
        self.on_ehlo: Callable[[], None] | None = None  # runs while a greeting is answered
        self.on_quit: Callable[[], None] | None = None  # runs while QUIT is answered
        self.data_delay = 0.0  # seconds to wait, after storing a message, before answering
        self.on_data: Callable[[], None] | None = None  # runs while DATA is being answered
        self.sessions = 0
        self._lock = threading.Lock()

    def _next(self, script: deque[str]) -> str | None:
        """The next scripted reply, or None when the script is empty."""
        with self._lock:
            return script.popleft() if script else None

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        with self._lock:
            self.sessions += 1
        if self.on_ehlo is not None:
            self.on_ehlo()
        session.host_name = hostname
        return responses

    async def handle_QUIT(self, server: Any, session: Any, envelope: Any) -> str:
        if self.on_quit is not None:
            self.on_quit()
        return "221 Bye"

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        reply = self._next(self.mail_replies)
        if reply == DROP:
            server.transport.close()
            return "421 closing"  # never read: the connection is already gone
        if reply is not None:
            return reply
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        reply = self._next(self.rcpt_replies)
        if reply == HANG_UP:
            # After the reply is written: the client sees 250, then loses the connection.
            asyncio.get_running_loop().call_soon(server.transport.close)
        elif reply not in (None, ACCEPT):
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.on_data is not None:
            self.on_data()
        with self._lock:
            if self.replies:
                return self.replies.popleft()
            self.messages.append(
                Received(
                    envelope.mail_from,
                    list(envelope.rcpt_tos),
                    envelope.original_content or envelope.content,
                    list(envelope.mail_options),
                    server.transport.get_extra_info("ssl_object") is not None,
                )
            )
        if self.data_delay:
            await asyncio.sleep(self.data_delay)
        return "250 2.0.0 OK: queued"


class SMTPSink(LocalSMTPServer):
    def __init__(self, handler: RecordingHandler) -> None:
        super().__init__(handler)
        self.recorder = handler

    @property
    def messages(self) -> list[Received]:
        return self.recorder.messages


class HeldData:
    """Makes a sink hold its answer to DATA until `release()`: a send in hand for as long as a
    test needs, whatever the machine's speed. `arrived` is set once a DATA command came. (The
    sink answers nothing else meanwhile: its event loop waits.)"""

    def __init__(self, sink: SMTPSink) -> None:
        self.arrived = threading.Event()
        self.released = threading.Event()
        sink.recorder.on_data = self._hold

    def _hold(self) -> None:
        self.arrived.set()
        self.released.wait(60)

    def release(self) -> None:
        self.released.set()
