"""The exceptions of a build: an input that cannot become a sample (``Reject``), a frame the filter drops
(``Filtered``), and an input that vanished while the build ran (``InputVanished``: the build stops)."""

from __future__ import annotations

import errno
import os
from pathlib import Path


class Reject(Exception):
    """An input that goes to the reject list: ``reason`` is a short category, ``detail`` says more."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class Filtered(Exception):
    """A video frame the task's filter drops (not an unusable input): a counted row with its reason and stats."""

    def __init__(self, reason: str, stats: dict | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.stats = stats


class InputVanished(FileNotFoundError):
    """An input the build listed when it started is gone when its shard reads it (deleted, moved, an
    unmounted disk). Not a reject: the set would silently lack an input its fingerprint claims, so the
    shard fails, the build stops with one line, and the shards already done stay done."""

    def __init__(self, path: str | Path) -> None:
        super().__init__(errno.ENOENT, "vanished during the build (it was listed when the build started)", str(path))

    def __reduce__(self):  # Ray hands a worker's exception to the driver pickled
        return type(self), (self.filename,)


def check_still_there(path: str | Path) -> None:
    """InputVanished when nothing is at ``path`` any more; a dangling symlink is still there (a reject)."""
    if not os.path.lexists(path):
        raise InputVanished(path)
