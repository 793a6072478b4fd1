"""Running `main.py` as a child process on the test's database and SMTP sink, and stopping it."""

from __future__ import annotations

import os
import signal
import subprocess
import time

from settings import Settings
from tests.smtp_sink import SMTPSink


def child_environment(settings: Settings, sink: SMTPSink) -> dict[str, str]:
    """The environment for a `main.py` child process on the test database and SMTP sink."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SMTP_", "EMAIL_"))}
    env.update(
        EMAIL_LOG_DATABASE_URL=settings.database_url,
        SMTP_SERVER="127.0.0.1",
        SMTP_PORT=str(sink.port),
        SMTP_USE_TLS="false",
        EMAIL_SIGNING_SECRET="s",
        EMAIL_PUBLIC_BASE_URL="https://mail.example.test",
    )
    return env


def stop_once_a_message_arrives(process: subprocess.Popen[str], sink: SMTPSink) -> int:
    """SIGTERM `process`, as a process manager stops it, once `sink` holds a message; returns
    its exit code. A process still running 30 s later is killed (and the test fails)."""
    try:
        deadline = time.monotonic() + 60
        while not sink.messages:
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            assert time.monotonic() < deadline, "no message reached the SMTP server"
            time.sleep(0.02)
        process.send_signal(signal.SIGTERM)
        return process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
