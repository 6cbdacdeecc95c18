"""Write-then-rename helpers: a reader (or a rerun after a kill) never sees a half-written file."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def tmp_path(path: Path) -> Path:
    """A temporary name beside ``path``, unique per process; stale ones end in ``.tmp``."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def finish(tmp: Path, path: Path) -> None:
    """fsync and atomically move a finished temporary file into place."""
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def write_bytes_atomic(path: Path, data: bytes) -> None:
    tmp = tmp_path(path)
    tmp.write_bytes(data)
    finish(tmp, path)


def write_json_atomic(path: Path, obj: Any) -> None:
    write_bytes_atomic(path, (json.dumps(obj, indent=1, sort_keys=True) + "\n").encode())
