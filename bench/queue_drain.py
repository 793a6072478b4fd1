"""How fast Celery workers drain queued sends, beside the raw smtplib ceiling, in one run.

Every case runs on a fresh PostgreSQL database (created on `--postgres`'s server, dropped
afterwards), a private redis-server on a free port as the broker, and an SMTP sink in its own
process that counts what it receives. The sends are accepted first (`respond_async`, through
the tools in a child process), then `main.py worker` processes drain them; the rate is taken at
the sink, from its first message to its last, so the workers' start-up is not counted. Each
case then checks that every send is recorded `sent` and that the sink received exactly one
message per send.

- ceiling: smtplib on one reused connection, prebuilt bytes (bench/send_throughput.py's (a)),
  measured again before each round;
- one worker, then two, the sends published by the dispatcher in batches (`--batch`), for
  `--rounds` rounds;
- one worker, tasks published one by one as the requests were accepted (a batch of one each);
- latency-bound: the sink answers DATA after 50 ms, one worker with `--concurrency 8`
  (ideal 8 / 0.05 = 160 msg/s), and `main.py serve --threads 8` with synchronous sends
  against the same sink (bench/serve_latency.py) for comparison.

    python bench/queue_drain.py --postgres postgresql+psycopg://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import send_throughput  # needs the path above
import serve_latency

REPO = serve_latency.REPO_ROOT

_ACCEPT = """
import json, sys
import tools
from tools import queue
spec = json.loads(sys.argv[1])
ws = tools.create_workspace("Bench", "bench@example.com", "1 Bench Street, Testville",
                            rate_limit_per_hour=1_000_000)
for i in range(spec["sends"]):
    ex = f"drain_{i}"
    for code in ("CX01", "CX02", "CX03", "CX04", "CX05"):
        assert tools.record_circuit_result(ws["workspace_id"], ex, code, True)["success"]
    assert tools.record_circuit_result(ws["workspace_id"], ex, "CX06", True,
                                       output=spec["asset"])["success"]
    result = tools.send_email(ws["workspace_id"], "550e8400-e29b-41d4-a716-446655440000", ex,
                              f"{ex}@example.com", spec["asset"], respond_async=True)
    assert result["status"] == "queued", result
tools.shutdown()
"""
_DISPATCH = """
import tools
from tools import queue
while queue.dispatch(tools.get_runtime()):
    pass
tools.shutdown()
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def private_redis() -> Iterator[str]:
    port = _free_port()
    command = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    server = subprocess.Popen([*command, "--appendonly", "no"], stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.kill()
        server.wait()


def _run(script: str, env: dict[str, str], *args: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", script, *args], cwd=REPO, env=env, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])


@contextlib.contextmanager
def workers(env: dict[str, str], count: int, concurrency: int, logs: Path) -> Iterator[None]:
    """`count` `main.py worker` processes, each once it has said it is ready."""
    started = []
    for i in range(count):
        log = logs / f"worker{i}.log"
        with log.open("w") as out:
            command = [sys.executable, str(REPO / "main.py"), "worker"]
            process = subprocess.Popen(
                [*command, "--concurrency", str(concurrency)],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        started.append((process, log))
    try:
        for _, log in started:
            _wait(lambda log=log: "ready." in log.read_text(), 60, f"worker not ready: {log}")
        yield
    finally:
        for process, _ in started:
            os.killpg(process.pid, signal.SIGTERM)
        for process, _ in started:
            process.wait(60)


def _wait(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(what)
        time.sleep(0.01)


def drain_rate(counter: Synchronized, sends: int, timeout: float = 900) -> float:
    """Messages per second at the sink, from its first message to its last."""

    def received() -> int:
        with counter.get_lock():
            return int(counter.value)

    _wait(lambda: received() >= 1, timeout, "nothing arrived")
    first = time.perf_counter()
    _wait(lambda: received() >= sends, timeout, f"only {received()} of {sends} arrived")
    last = time.perf_counter()
    time.sleep(0.5)  # a duplicate would arrive now
    if received() != sends:
        raise RuntimeError(f"the sink received {received()}, not {sends}")
    return (sends - 1) / (last - first)


def check_recorded(database_url: str, sends: int) -> None:
    from sqlalchemy import text

    from persistence import all_workspaces, make_engine

    # The project's engine, in every workspace's scope: the bench connects as an ordinary role,
    # which row-level security shows nothing without one.
    engine = make_engine(database_url)
    query = text("SELECT status, count(*) FROM email_agent_executions GROUP BY status")
    deadline = time.monotonic() + 120
    while True:
        with all_workspaces(), engine.connect() as conn:
            counts = dict(conn.execute(query).all())
        if counts == {"sent": sends} or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    engine.dispose()
    if counts != {"sent": sends}:
        raise RuntimeError(f"recorded {counts}, not {sends} sent")


def one_case(
    args: argparse.Namespace,
    *,
    sends: int,
    workers_: int,
    concurrency: int,
    batch: int | None,
    delay: float,
) -> float:
    """Accept `sends`, publish them (one by one if `batch` is None, else by the dispatcher in
    batches), drain them with the workers: the rate at the sink."""
    with (
        tempfile.TemporaryDirectory(prefix="bench-drain-") as tmp,
        serve_latency.slow_sink(delay) as (port, counter),
        serve_latency.fresh_database(args.postgres, Path(tmp)) as url,
        private_redis() as broker,
    ):
        env = serve_latency.environment(url, port, REPO, Path(tmp))
        env.update(EMAIL_AGENT_LOG_LEVEL="INFO", EMAIL_SEND_BATCH_SIZE=str(batch or 1))
        queued = {**env, "CELERY_BROKER_URL": broker}
        spec = json.dumps({"sends": sends, "asset": serve_latency.ASSET})
        if batch is None:  # each request publishes its own task
            _run(_ACCEPT, queued, spec)
            with workers(queued, workers_, concurrency, Path(tmp)):
                rate = drain_rate(counter, sends)
        else:
            _run(_ACCEPT, env, spec)  # no broker: the rows wait for the dispatcher
            with workers(queued, workers_, concurrency, Path(tmp)):
                _run(_DISPATCH, queued)
                rate = drain_rate(counter, sends)
        check_recorded(url, sends)
    return rate


def ceiling(n: int, rounds: int = 3) -> float:
    """The median of `rounds` (the figure moves by a quarter from run to run here)."""
    html, text = send_throughput.build_content()
    with serve_latency.slow_sink(0.0) as (port, counter):
        rates = [send_throughput.case_a(port, counter, n, html, text) for _ in range(rounds)]
    return statistics.median(rates)


def serve_figure(args: argparse.Namespace) -> str:
    command = [sys.executable, str(REPO / "bench" / "serve_latency.py"), "--postgres"]
    command += [args.postgres, "--threads", "8", "--clients", "16", "--rounds", "1"]
    command += ["--sends", str(args.latency_sends)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return done.stdout.strip().splitlines()[-1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", required=True, help="server URL (a database per case)")
    parser.add_argument("--sends", type=int, default=5000)
    parser.add_argument("--latency-sends", type=int, default=800)
    parser.add_argument("--batch", type=int, default=20, help="EMAIL_SEND_BATCH_SIZE")
    parser.add_argument("--rounds", type=int, default=2, help="of the batched cases")
    args = parser.parse_args(argv)
    if shutil.which("redis-server") is None:
        parser.error("needs redis-server (Debian's redis-server package)")

    n, b = args.sends, args.batch
    # The ceiling is measured again just before each case: on this machine it moves by a
    # quarter within minutes, and each ratio is taken to the ceiling of its own moment.
    for _ in range(args.rounds):
        raw = ceiling(2000)
        print(f"ceiling: smtplib, one connection, prebuilt bytes: {raw:.0f} msg/s (median of 3)")
        one = one_case(args, sends=n, workers_=1, concurrency=1, batch=b, delay=0)
        print(f"  1 worker, {n} in batches of {b}: {one:.0f} msg/s = {one / raw:.2f} x (>= 0.6)")
        two = one_case(args, sends=n, workers_=2, concurrency=1, batch=b, delay=0)
        print(f"  2 workers, the same: {two:.0f} msg/s = {two / one:.2f} x one (>= 1.5)")
    single = one_case(args, sends=n, workers_=1, concurrency=1, batch=None, delay=0)
    print(f"1 worker, {n} published one by one as accepted: {single:.0f} msg/s")
    m = args.latency_sends
    slow = one_case(args, sends=m, workers_=1, concurrency=8, batch=b, delay=0.05)
    print(
        f"latency-bound, DATA after 50 ms, 1 worker --concurrency 8, {m} sends: "
        f"{slow:.0f} msg/s = {slow / 160:.2f} x the ideal 160 (>= 128 msg/s)"
    )
    print(f"latency-bound, serve --threads 8, synchronous sends: {serve_figure(args)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
