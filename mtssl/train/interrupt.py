"""Ctrl-C and SIGTERM end a run with one line: where it stopped, what is kept, the command that resumes.

A scheduler's SIGTERM (Slurm, Kubernetes, ``kill``) is turned into the same ``KeyboardInterrupt`` as
Ctrl-C, so both unwind the loop the same way: the loader's workers and the run lock are released, no
checkpoint is half-written (they are written then renamed), and :class:`Interrupted` carries the line.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

EXIT_CODES = {"SIGINT": 130, "SIGTERM": 143}  # 128 + the signal's number, as shells report it


class Interrupted(Exception):
    """The run was stopped by a signal; ``str()`` is the line to print and ``exit_code`` the status."""

    def __init__(self, signal_name: str, step: int, steps: int, out: Path, kept: Path | None, kept_step: int) -> None:
        self.exit_code = EXIT_CODES.get(signal_name, 130)
        if kept is None:
            saved = "no checkpoint written yet; rerun the same command to start again"
        else:
            saved = f"kept {kept} (step {kept_step}); resume with: mtssl-train --out {out} --resume"
        super().__init__(f"interrupted ({signal_name}) at step {step} of {steps}; {saved}")


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C's KeyboardInterrupt would be."""


def signal_name(exc: KeyboardInterrupt) -> str:
    return "SIGTERM" if isinstance(exc, _Terminated) else "SIGINT"


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`KeyboardInterrupt` (a subclass) in the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise _Terminated()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
