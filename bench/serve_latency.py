"""Latency-bound throughput of `main.py serve`: synchronous sends against a slow SMTP server.

A sink in its own process answers each DATA after `--data-delay` seconds (50 ms by default),
as a distant relay would; everything else it answers at once. `main.py serve --threads N`
runs as a child process on a fresh database, and `--clients` threads POST
`/api/circuits/agents/email/send` until `--sends` emails have gone. With every thread waiting
on the relay, the ideal is threads / data-delay messages per second (8 / 0.05 = 160); the
figure printed is how close the service comes. Each round checks that every answer was 200
"sent" and that the sink received exactly one message per send.

The database is a fresh SQLite file, or with `--postgres URL` a fresh database created on that
server, owned by a fresh role that is no superuser, which the service connects as (so the
row-level security policies apply, as in production); both are dropped afterwards. The
sends go to `--workspaces` workspaces in turn. `--repo` runs another checkout's `main.py`
(and its own tools, for the set-up), so two commits can be compared in one sitting:

    python bench/serve_latency.py                       # SQLite, 200 sends, 16 clients
    python bench/serve_latency.py --postgres postgresql+psycopg://postgres@127.0.0.1:5432/test
    python bench/serve_latency.py --repo /tmp/before --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import re
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path
from typing import Any

import httpx

REPO_ROOT = Path(__file__).resolve().parent.parent
MP = multiprocessing.get_context("spawn")
ASSET = {
    "subject": "Latency-bound benchmark",
    "html_body": "<p>" + "A paragraph of an ordinary marketing email. " * 60 + "</p>",
    "text_body": "A paragraph of an ordinary marketing email. " * 60,
}


# --------------------------------------------------------------------------------------------
# The slow sink (its own process)


class SlowHandler:
    """Counts each message, then answers DATA after `delay` seconds (without blocking the loop,
    so every connection waits its own delay at the same time)."""

    def __init__(self, counter: Synchronized, delay: float) -> None:
        self.counter = counter
        self.delay = delay

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.counter.get_lock():
            self.counter.value += 1
        await asyncio.sleep(self.delay)
        return "250 OK"


def run_sink(conn: Connection, counter: Synchronized, delay: float) -> None:
    sys.path.insert(0, str(REPO_ROOT))
    from tools.dev_smtp_server import LocalSMTPServer

    server = LocalSMTPServer(SlowHandler(counter, delay), port=0)
    server.start()
    try:
        conn.send(server.port)
        with contextlib.suppress(EOFError, OSError):
            conn.recv()
    finally:
        server.stop()


@contextlib.contextmanager
def slow_sink(delay: float) -> Iterator[tuple[int, Synchronized]]:
    counter: Synchronized = MP.Value("q", 0)
    parent, child = MP.Pipe()
    process = MP.Process(target=run_sink, args=(child, counter, delay), daemon=True)
    process.start()
    try:
        if not parent.poll(30):
            raise RuntimeError("the SMTP sink did not start within 30 s")
        yield parent.recv(), counter
    finally:
        with contextlib.suppress(OSError):
            parent.send("stop")
        process.join(5)
        if process.is_alive():
            process.kill()
            process.join()


# --------------------------------------------------------------------------------------------
# A fresh database, set up by the checkout under test

_SETUP = """
import json, sys
import tools
spec = json.loads(sys.argv[1])
workspaces = []
for w in range(spec["workspaces"]):
    ws = tools.create_workspace(f"Bench {w}", "bench@example.com", "1 Bench Street, Testville",
                                rate_limit_per_hour=1_000_000)
    executions = []
    for i in range(spec["executions"]):
        ex = f"lat_{w}_{i}"
        for code in ("CX01", "CX02", "CX03", "CX04", "CX05"):
            assert tools.record_circuit_result(ws["workspace_id"], ex, code, True)["success"]
        assert tools.record_circuit_result(
            ws["workspace_id"], ex, "CX06", True, output=spec["asset"])["success"]
        executions.append(ex)
    workspaces.append({"key": ws["api_key"], "executions": executions})
tools.shutdown()
print(json.dumps(workspaces))
"""


@contextlib.contextmanager
def fresh_database(postgres: str | None, tmp: Path) -> Iterator[str]:
    if postgres is None:
        yield f"sqlite:///{tmp}/bench.db"
        return
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    # The service connects as an ordinary role, the database's owner, as it should in
    # production: a superuser would skip the row-level security policies being measured.
    name = f"bench_latency_{uuid.uuid4().hex[:12]}"
    admin = create_engine(postgres, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE ROLE "{name}" LOGIN NOSUPERUSER NOBYPASSRLS'))
        connection.execute(text(f'CREATE DATABASE "{name}" OWNER "{name}"'))
    try:
        url = make_url(postgres).set(database=name, username=name)
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            connection.execute(text(f'DROP ROLE IF EXISTS "{name}"'))
        admin.dispose()


def environment(database_url: str, smtp_port: int, repo: Path, tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SMTP_", "EMAIL_"))}
    env.update(
        PYTHONPATH=str(repo),
        EMAIL_LOG_DATABASE_URL=database_url,
        SMTP_SERVER="127.0.0.1",
        SMTP_PORT=str(smtp_port),
        SMTP_USE_TLS="false",
        EMAIL_SIGNING_SECRET=secrets.token_urlsafe(32),  # a throwaway database's
        EMAIL_PUBLIC_BASE_URL="https://bench.example.com",
        EMAIL_RECIPIENT_THROTTLE_SECONDS="0",
        EMAIL_AGENT_LOG_LEVEL="WARNING",
        EMAIL_OUTBOX_DIR=str(tmp / "outbox"),
    )
    return env


def set_up(
    env: dict[str, str], repo: Path, workspaces: int, executions: int
) -> list[dict[str, Any]]:
    spec = json.dumps({"workspaces": workspaces, "executions": executions, "asset": ASSET})
    done = subprocess.run(
        [sys.executable, "-c", _SETUP, spec],
        cwd=repo,  # `python -c` imports from the working directory first
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"set-up failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


@contextlib.contextmanager
def serving(env: dict[str, str], repo: Path, threads: int) -> Iterator[str]:
    command = [sys.executable, str(repo / "main.py"), "serve", "--port", "0"]
    command += ["--threads", str(threads)]
    server = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    try:
        assert server.stdout is not None
        found = re.search(r"http://127\.0\.0\.1:(\d+)", server.stdout.readline())
        if found is None:
            raise RuntimeError("serve did not print its address")
        yield f"http://127.0.0.1:{found.group(1)}"
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


# --------------------------------------------------------------------------------------------
# The load


def post_all(base: str, jobs: list[tuple[str, str, str]], clients: int) -> float:
    """POST every (key, execution, recipient) with `clients` threads; the wall time taken."""
    local = threading.local()
    problems: list[str] = []

    def post(job: tuple[str, str, str]) -> None:
        key, execution, recipient = job
        if not hasattr(local, "client"):
            local.client = httpx.Client(base_url=base, timeout=60)
        body = {
            "client_id": "550e8400-e29b-41d4-a716-446655440000",
            "circuit_execution_id": execution,
            "recipient": recipient,
            "final_asset": ASSET,
        }
        reply = local.client.post(
            "/api/circuits/agents/email/send",
            json=body,
            headers={"Authorization": f"Bearer {key}"},
        )
        if reply.status_code != 200 or reply.json().get("status") != "sent":
            problems.append(f"{reply.status_code} {reply.text[:200]}")

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(post, jobs))
    elapsed = time.perf_counter() - start
    if problems:
        raise RuntimeError(f"{len(problems)} sends not sent; first: {problems[0]}")
    return elapsed


def one_round(args: argparse.Namespace, repo: Path) -> float:
    warmup = args.threads
    per_workspace = -(-(args.sends + warmup) // args.workspaces)
    with (
        tempfile.TemporaryDirectory(prefix="bench-latency-") as tmpdir,
        slow_sink(args.data_delay) as (port, counter),
        fresh_database(args.postgres, Path(tmpdir)) as url,
    ):
        env = environment(url, port, repo, Path(tmpdir))
        workspaces = set_up(env, repo, args.workspaces, per_workspace)
        jobs = [
            (ws["key"], execution, f"{execution}@example.com")
            for i in range(per_workspace)
            for ws in workspaces
            for execution in [ws["executions"][i]]
        ]
        with serving(env, repo, args.threads) as base:
            post_all(base, jobs[:warmup], args.clients)
            elapsed = post_all(base, jobs[warmup : warmup + args.sends], args.clients)
        with counter.get_lock():
            received = int(counter.value)
        if received != warmup + args.sends:
            raise RuntimeError(f"the sink received {received}, not {warmup + args.sends}")
    return args.sends / elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sends", type=int, default=200)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--threads", type=int, default=8, help="serve's --threads")
    parser.add_argument("--data-delay", type=float, default=0.05, help="seconds")
    parser.add_argument("--workspaces", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--postgres", help="server URL; a database is created and dropped")
    parser.add_argument("--repo", type=Path, default=REPO_ROOT, help="checkout to run")
    args = parser.parse_args(argv)
    repo = args.repo.resolve()
    ideal = args.threads / args.data_delay
    store = "PostgreSQL" if args.postgres else "SQLite"
    print(
        f"{repo.name} ({_commit(repo)}), {store}: serve --threads {args.threads}, "
        f"{args.clients} clients, {args.sends} sends over {args.workspaces} workspace(s), "
        f"DATA answered after {args.data_delay * 1000:.0f} ms (ideal {ideal:.0f} msg/s)"
    )
    rates = [one_round(args, repo) for _ in range(args.rounds)]
    median = statistics.median(rates)
    print(f"msg/s per round: {', '.join(f'{r:.1f}' for r in rates)}")
    print(f"median {median:.1f} msg/s = {median / ideal:.2f} of the ideal")
    return 0


def _commit(repo: Path) -> str:
    done = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "--short", "HEAD"],  # noqa: S607
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip() or "?"


if __name__ == "__main__":
    sys.exit(main())
