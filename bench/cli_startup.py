"""Wall time of the quick commands, `python main.py status | create-workspace | send`, each run
as a new process the way a user or a script runs it: the interpreter's start, the imports, the
settings, the database, the command, the exit.

Each command runs `--runs` times (default 5) on the embedded defaults, in a scratch directory
(a SQLite file, the development SMTP server); the median, fastest and slowest are printed. `send`
sends for real: each run to a new recipient of one approved circuit execution.

Python caches each module's compiled bytecode (`__pycache__`) the first time it runs, as on any
ordinary install; the commands run so here even where PYTHONDONTWRITEBYTECODE is set (this
sandbox sets it), which would have them compile the project's modules at every start (about
0.15 s more).

Run:
    cd /work/main && . .venv/bin/activate && python bench/cli_startup.py
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MAIN = Path(__file__).resolve().parent.parent / "main.py"
CLIENT_ID = "550e8400-e29b-41d4-a716-446655440000"


def _environment() -> dict[str, str]:
    """This environment without the service's settings (the embedded defaults), caching
    bytecode."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SMTP_", "EMAIL_", "SENDGRID_", "RESEND_", "CELERY_"))
        and k != "PYTHONDONTWRITEBYTECODE"
    }


def _main(cwd: Path, *args: str) -> tuple[float, subprocess.CompletedProcess[str]]:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, str(MAIN), *args],
        cwd=cwd,
        env=_environment(),
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.perf_counter() - started
    if done.returncode not in (0, 1):  # status of an unknown id is 1, as it should be
        raise SystemExit(f"main.py {' '.join(args)} failed:\n{done.stderr}")
    return elapsed, done


def _approved_execution(cwd: Path) -> str:
    """A workspace whose execution `bench` has CX01-CX06 passed: its id."""
    _, created = _main(
        cwd, "create-workspace", "--name", "Bench", "--sender-email", "b@bench.example",
        "--postal-address", "1 Bench Road, Springfield",
    )  # fmt: skip
    workspace_id = json.loads(created.stdout)["workspace_id"]
    asset = cwd / "asset.json"
    asset.write_text(json.dumps({"subject": "Bench", "html_body": "<p>Hello</p>"}))
    for circuit in ("CX01", "CX02", "CX03", "CX04", "CX05", "CX06"):
        extra = ["--output-file", str(asset)] if circuit == "CX06" else []
        _main(
            cwd, "record-circuit", "--workspace-id", workspace_id, "--execution-id", "bench",
            "--circuit", circuit, *extra,
        )  # fmt: skip
    return workspace_id


def _report(name: str, seconds: list[float]) -> None:
    print(
        f"{name:17s} median {statistics.median(seconds):.2f} s   "
        f"fastest {min(seconds):.2f}   slowest {max(seconds):.2f}   ({len(seconds)} runs)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        cwd = Path(scratch)
        workspace_id = _approved_execution(cwd)  # also the first start: migrations run here
        send = ["send", "--workspace-id", workspace_id, "--client-id", CLIENT_ID]
        workspace = ["create-workspace", "--sender-email", "w@bench.example"]
        workspace += ["--postal-address", "1 Bench Road, Springfield"]
        commands = {
            "status": lambda run: ["status", CLIENT_ID],
            "create-workspace": lambda run: [*workspace, "--name", f"W{run}"],
            "send": lambda run: [*send, "--execution-id", "bench", "--recipient", f"r{run}@x.org"],
        }
        for name, arguments in commands.items():
            _report(name, [_main(cwd, *arguments(run))[0] for run in range(args.runs)])


if __name__ == "__main__":
    main()
