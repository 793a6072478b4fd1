"""A real HTTP server on 127.0.0.1 for provider fakes, with scriptable misbehaviour.

Each fake validates requests as its real API does and answers in its real format. A test
queues `Reply`, `Slow` or `Drop` entries to script the next answers; with the queue empty the
fake answers as the real service would. Everything received is kept in `requests`, and each
message the fake accepted (and would deliver) in `delivered`.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Reply:
    """Answer with this status, JSON body and headers, delivering nothing."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Slow:
    """Accept the message (it will be delivered), then answer only after `seconds`."""

    seconds: float


@dataclass(frozen=True)
class Drop:
    """Close the connection without an answer, after accepting the message if `accept`."""

    accept: bool = True


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    body: Any
    raw: bytes
    at: float  # time.monotonic()


@dataclass
class Answer:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


class FakeAPI:
    """Subclasses implement `handle(received) -> Answer` (validation and the normal answer)."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.delivered: list[dict[str, Any]] = []
        self.script: deque[Reply | Slow | Drop] = deque()
        self.on_request: Callable[[], None] | None = None  # runs as each request arrives
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                fake._serve(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> FakeAPI:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def handle(self, received: Received) -> Answer:
        raise NotImplementedError

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        if self.on_request is not None:
            self.on_request()
        length = int(handler.headers.get("Content-Length", "0"))
        raw = handler.rfile.read(length)
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        received = Received(
            handler.command,
            handler.path,
            {k.lower(): v for k, v in handler.headers.items()},
            body,
            raw,
            time.monotonic(),
        )
        with self.lock:
            self.requests.append(received)
            step = self.script.popleft() if self.script else None
        if isinstance(step, Reply):
            answer = Answer(step.status, step.body, dict(step.headers))
        elif isinstance(step, Drop) and not step.accept:
            answer = None
        else:
            answer = self.handle(received)
        if isinstance(step, Drop) or answer is None:
            handler.close_connection = True
            handler.connection.close()
            return
        if isinstance(step, Slow):
            time.sleep(step.seconds)
        self._write(handler, answer)

    def accept(self, received: Received, **details: Any) -> None:
        with self.lock:
            self.delivered.append({"request": received, **details})

    @staticmethod
    def _write(handler: BaseHTTPRequestHandler, answer: Answer) -> None:
        data = b"" if answer.body is None else json.dumps(answer.body).encode()
        try:
            handler.send_response(answer.status)
            for name, value in answer.headers.items():
                handler.send_header(name, value)
            if data:
                handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            handler.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up waiting (timeout tests)
