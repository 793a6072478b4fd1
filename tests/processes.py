"""Running `main.py` as a child process on the test's database and SMTP sink, and stopping it."""

from __future__ import annotations

import os
import threading
from typing import IO

from settings import Settings
from tests.builders import SIGNING_SECRET
from tests.smtp_sink import SMTPSink


def child_environment(settings: Settings, sink: SMTPSink) -> dict[str, str]:
    """The environment for a `main.py` child process on the test database and SMTP sink."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SMTP_", "EMAIL_", "CELERY_"))}
    env.update(
        EMAIL_LOG_DATABASE_URL=settings.database_url,
        SMTP_SERVER="127.0.0.1",
        SMTP_PORT=str(sink.port),
        SMTP_USE_TLS="false",
        EMAIL_SIGNING_SECRET=SIGNING_SECRET,
        EMAIL_PUBLIC_BASE_URL="https://mail.example.test",
    )
    return env


def wait_for_line(stream: IO[str], text: str, timeout: float = 60) -> list[str]:
    """Read `stream` (a child's stderr, say) until a line contains `text`; the lines read.
    Fails if no such line came within `timeout` seconds."""
    lines: list[str] = []
    found = threading.Event()

    def read() -> None:
        for line in stream:
            lines.append(line)
            if text in line:
                found.set()
                return

    threading.Thread(target=read, daemon=True).start()
    assert found.wait(timeout), f"no line with {text!r} in: {''.join(lines)[-2000:]}"
    return lines
