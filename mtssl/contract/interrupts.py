"""Ctrl-C and SIGTERM end a build or a run the same way: one line, exit 130 or 143, nothing half-written.

A scheduler's SIGTERM (Slurm, Kubernetes, ``kill``) is turned into the same ``KeyboardInterrupt`` as
Ctrl-C, so both unwind through the same ``except``: Ray tasks and loader workers are let go, the folder's
lock (``locks.py``) is released, and no file is half-written (every write is write-then-rename). Each
command then says where it stopped and how to go on. Shared by both halves, as the lock is.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

EXIT_CODES = {"SIGINT": 130, "SIGTERM": 143}  # 128 + the signal's number, as shells report it


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C's KeyboardInterrupt would be."""


_TERMINATED = threading.Event()  # SIGTERM came in the last sigterm_as_interrupt block (see signal_name)


def signal_name(exc: KeyboardInterrupt) -> str:
    """Which signal ``exc`` stands for. Ray's blocking calls (``ray.wait``, ``ray.get``) turn any
    KeyboardInterrupt raised in them into a plain one, so the handler's record counts too."""
    return "SIGTERM" if isinstance(exc, Terminated) or _TERMINATED.is_set() else "SIGINT"


def exit_code(exc: KeyboardInterrupt) -> int:
    return EXIT_CODES[signal_name(exc)]


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated` (a KeyboardInterrupt) in the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        _TERMINATED.set()
        raise Terminated()

    _TERMINATED.clear()
    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
