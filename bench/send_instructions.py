"""Instructions per `tools.send_email`, counted by valgrind: a figure this VM's noise does not move.

The wall-clock figures of `send_throughput.py` vary by 20-40% between runs on a shared VM, so a
change worth a few percent cannot be told from noise there. Callgrind counts the instructions
the client process executes: the same code gives the same count to about 0.01%, run after run,
whatever else the machine is doing. It counts only the client's own work; waiting (SMTP round
trips, fsync) costs no instructions, so this complements the throughput figures and does not
replace them.

It runs case (c) of `send_throughput.py` (same message, same pipeline, SQLite, the aiosmtpd sink
in its own untraced process) under `valgrind --tool=callgrind`, with counting switched on only
around the measured sends, after a few warm-up sends have filled the caches that first calls
fill (compiled SQL, templates, the SMTP connection).

Needs valgrind (`apt-get install valgrind`). About 45 s for the default 100 messages.

Run:
    cd /work/main && . .venv/bin/activate && python bench/send_instructions.py
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
if str(BENCH_DIR) not in sys.path:
    sys.path.insert(0, str(BENCH_DIR))

import send_throughput  # noqa: E402 - needs the path above (it puts the repository on sys.path)

WARMUP = 5


def _child(n: int, control: str) -> int:
    """Under valgrind (started with counting off): warm up, then n counted sends."""

    @contextlib.contextmanager
    def counting() -> Iterator[None]:
        pid = str(os.getpid())
        subprocess.run([control, "--instr=on", pid], check=True, capture_output=True)
        try:
            yield
        finally:
            subprocess.run([control, "--instr=off", pid], check=True, capture_output=True)

    html, text = send_throughput.build_content()
    with send_throughput.Sink() as sink:
        send_throughput._case_c_once(
            sink.port, sink.counter, n, html, text, warmup=WARMUP, measure=counting
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=send_throughput.positive_int, default=100)
    parser.add_argument("--child", metavar="CALLGRIND_CONTROL", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return _child(args.messages, args.child)

    valgrind, control = shutil.which("valgrind"), shutil.which("callgrind_control")
    if valgrind is None or control is None:
        print(
            "needs valgrind and its callgrind_control (apt-get install valgrind)", file=sys.stderr
        )
        return 2
    with tempfile.TemporaryDirectory(prefix="bench-instructions-") as tmpdir:
        run = subprocess.run(
            [
                valgrind,
                "--tool=callgrind",
                "--instr-atstart=no",
                f"--callgrind-out-file={tmpdir}/callgrind.out",
                sys.executable,
                __file__,
                "--child",
                control,
                "--messages",
                str(args.messages),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
    collected = re.search(r"Collected\s*:\s*(\d+)", run.stderr)
    if run.returncode != 0 or collected is None:
        print(f"the measured run failed (exit {run.returncode}):\n{run.stderr}", file=sys.stderr)
        return 1
    per_send = int(collected.group(1)) / args.messages
    print(
        f"{per_send / 1e6:.2f} million instructions per tools.send_email "
        f"({args.messages} counted sends after {WARMUP} warm-up sends; client process only)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
