"""Signal handlers for the long-running commands (`worker`, `serve`), installed for a block."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Callable, Iterator
from typing import Any


@contextlib.contextmanager
def handling_signals(handler: Callable[[int, Any], None], *signals: int) -> Iterator[None]:
    """`handler` for `signals` while the block runs; the previous handlers afterwards (tests
    run the commands in-process)."""
    previous = {sig: signal.signal(sig, handler) for sig in signals}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
