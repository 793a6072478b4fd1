"""The built-in development SMTP server: aiosmtpd on 127.0.0.1 writing each message to a file.

With no `SMTP_SERVER` configured, the runtime starts one in-process so the real SMTP path runs
and a person can open `./outbox/<email_id>.eml` to see exactly what was sent.
"""

from __future__ import annotations

import logging
import re
import uuid
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

log = logging.getLogger(__name__)
_MESSAGE_ID = re.compile(rb"^Message-ID:\s*<([0-9a-f-]{36})@", re.IGNORECASE | re.MULTILINE)


class LocalSMTPServer(Controller):
    """aiosmtpd's threaded controller bound to 127.0.0.1 on a port the OS picks (port=0)."""

    def __init__(self, handler: Any, port: int = 0, **kwargs: Any) -> None:
        super().__init__(handler, hostname="127.0.0.1", port=port, **kwargs)

    def _trigger_server(self) -> None:
        # aiosmtpd connects to self.port to finish start-up; learn the real port first.
        if self.port == 0 and self.server is not None:
            self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


class OutboxHandler:
    """Stores each received message as `<outbox>/<email_id>.eml` (the id from its Message-ID)."""

    def __init__(self, outbox_dir: Path) -> None:
        self.outbox_dir = outbox_dir
        outbox_dir.mkdir(parents=True, exist_ok=True)

    def path_for(self, email_id: str) -> Path:
        return self.outbox_dir / f"{email_id}.eml"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        content: bytes = envelope.original_content or envelope.content
        match = _MESSAGE_ID.search(content.split(b"\r\n\r\n", 1)[0])
        # The id becomes a file name, so only a UUID taken from the header is trusted.
        name = match.group(1).decode() if match else f"unknown-{uuid.uuid4()}"
        path = self.path_for(name)
        tmp = path.with_suffix(".eml.part")
        tmp.write_bytes(content)
        tmp.replace(path)
        log.info("development server stored a message", extra={"path": str(path)})
        return "250 Message accepted for delivery"
