"""One client interface over both ways the API is tested: Flask's test client in-process,
and HTTP to the app served by waitress on 127.0.0.1 (the `main.py serve` server)."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from typing import Any

import httpx
from flask import Flask
from waitress import wasyncore

from api.server import make_server


@dataclass(frozen=True)
class Reply:
    status_code: int
    headers: dict[str, str]  # lower-cased names
    content: bytes

    def json(self) -> Any:
        return json.loads(self.content)

    @property
    def text(self) -> str:
        return self.content.decode()


class InProcessClient:
    """Flask's test client."""

    transport = "flask"

    def __init__(self, app: Flask) -> None:
        self._client = app.test_client()

    def request(self, method: str, path: str, **kw: Any) -> Reply:
        response = self._client.open(path, method=method, **_flask_args(kw))
        headers = {name.lower(): value for name, value in response.headers.items()}
        return Reply(response.status_code, headers, response.get_data())

    def close(self) -> None:
        pass


class LiveServerClient:
    """Real HTTP to the app on waitress, on an OS-chosen port of 127.0.0.1."""

    transport = "http"

    def __init__(self, app: Flask) -> None:
        self._server = make_server(app, "127.0.0.1", 0, threads=4)
        self.base_url = f"http://127.0.0.1:{self._server.effective_port}"
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()
        self._client = httpx.Client(base_url=self.base_url, timeout=30, follow_redirects=False)

    def request(self, method: str, path: str, **kw: Any) -> Reply:
        response = self._client.request(method, path, **kw)
        headers = {name.lower(): value for name, value in response.headers.items()}
        return Reply(response.status_code, headers, response.content)

    def _serve(self) -> None:
        # waitress's run() loop, in short turns so that it can be stopped; closing its sockets
        # from this same thread avoids a select() on a descriptor another thread closed.
        sockets = self._server._map
        while not self._stopping.is_set():
            wasyncore.loop(timeout=0.05, map=sockets, count=1)
        self._server.task_dispatcher.shutdown()
        wasyncore.close_all(sockets)

    def close(self) -> None:
        self._client.close()
        self._stopping.set()
        self._thread.join(timeout=5)


def _flask_args(kw: dict[str, Any]) -> dict[str, Any]:
    """httpx's keyword names (json, content, data, files, params, headers) for Flask's client."""
    args: dict[str, Any] = {}
    for name, value in kw.items():
        if name == "params":
            args["query_string"] = value
        elif name == "content":
            args["data"] = value
        elif name == "files":
            # httpx's (filename, value) form fields, as Werkzeug's multipart encoder takes them
            args["data"] = {name: field[1] for name, field in value.items()}
            args["content_type"] = "multipart/form-data"
        else:
            args[name] = value
    return args


class API:
    """What a test uses: `api.get(path, ...)`, `api.post(...)`, authenticated as a key."""

    def __init__(self, client: InProcessClient | LiveServerClient) -> None:
        self.client = client
        self.transport = client.transport

    def request(self, method: str, path: str, *, key: str | None = None, **kw: Any) -> Reply:
        if key is not None:
            kw["headers"] = {"Authorization": f"Bearer {key}", **kw.get("headers", {})}
        return self.client.request(method, path, **kw)

    def get(self, path: str, **kw: Any) -> Reply:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> Reply:
        return self.request("POST", path, **kw)

    def patch(self, path: str, **kw: Any) -> Reply:
        return self.request("PATCH", path, **kw)
