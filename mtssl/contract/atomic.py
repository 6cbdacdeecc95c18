"""Write-then-rename: a reader (or a rerun after a kill) never sees a half-written file. Both halves write
this way: the producer its shards, parts and manifest, the trainer its checkpoints and logs."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

HOST = socket.gethostname().replace(".", "-")


def tmp_path(path: Path) -> Path:
    """A temporary name beside ``path``, unique per process and host: ``.NAME.HOST.PID.tmp``."""
    return path.with_name(f".{path.name}.{HOST}.{os.getpid()}.tmp")


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def remove_stale_tmp(folder: Path) -> list[Path]:
    """Remove the temporary files in ``folder`` left by dead processes of this host; returns them.

    A temporary file of a live process (a second build writing into the same folder) or of another
    host (a Ray worker elsewhere on a shared disk) is left to its owner: only it knows whether it is
    still writing. A temporary file never counts as done, whoever leaves it behind."""
    removed = []
    for tmp in Path(folder).glob(".*.tmp"):
        parts = tmp.name[1:].rsplit(".", 3)  # NAME, HOST, PID, "tmp"
        if len(parts) == 4 and parts[1] == HOST and parts[2].isdigit() and not process_alive(int(parts[2])):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def finish(tmp: Path, path: Path) -> None:
    """fsync and atomically move a finished temporary file into place, then fsync its folder."""
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (where the platform opens folders)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_bytes_atomic(path: Path, data: bytes) -> None:
    tmp = tmp_path(path)
    tmp.write_bytes(data)
    finish(tmp, path)


def json_record(obj: Any) -> bytes:
    """``obj`` as the house writes JSON records: indented, keys sorted, a final newline."""
    return (json.dumps(obj, indent=1, sort_keys=True) + "\n").encode()


def write_json_atomic(path: Path, obj: Any) -> None:
    write_bytes_atomic(path, json_record(obj))
