"""One writer per folder: an advisory lock that a build holds on its ``--out`` and a training run on its run
folder, so that a second writer refuses in one line naming the holder instead of mixing its files with the
first one's. Readers never take it.

The lock is a hidden file (or object) in the folder, :data:`~mtssl.contract.names.LOCK_FILE`, holding JSON:
``host``, ``pid``, ``started`` (UTC, ISO 8601), ``what`` (a build, a training run) and ``command`` (the
holder's ``sys.argv``). Listings skip dot-files on disk, and nothing that reads a set (the manifest,
``verify``) looks at names other than its own, so the lock is never taken for part of a set. It is removed
when its holder is done; :func:`hold` is the way to take it::

    with hold(out, what="training run"):
        ...

Guarantees, by kind of location:

* A folder (local or a shared disk): the file is created with ``O_CREAT | O_EXCL``, so of two writers
  exactly one creates it, and its holder keeps an exclusive ``flock`` on it. A lock of this host whose
  holder is gone (nobody holds its flock: the kernel drops it when a process dies, whatever became of the
  pid) is stale: the next writer takes it over under that flock, so two takers cannot both win. A lock file
  that stays empty or unreadable for :data:`GRACE_S` seconds (its writer died between creating and filling
  it) is stale too. A lock of another host is refused (its pid cannot be checked from here); the message
  says to delete the file once that process is known to be gone. Where the filesystem has no flock, a lock
  of this host is judged by its pid alone, and two writers taking over the same stale lock at the same
  moment can both proceed.
* A bucket (an fsspec URL): the object is written with fsspec's ``mode="create"``. On ``s3://`` (s3fs) that
  is a conditional PUT (``If-None-Match: *``): where the store implements conditional writes (AWS S3 since
  2024-08, MinIO, moto) exactly one of two writers creates it, and a stale lock (this host, a pid that no
  longer runs) is replaced only if it is still the version judged stale (``If-Match`` its ETag). Elsewhere
  (a store that ignores the condition, other filesystems, whose ``mode="create"`` checks then writes) it is
  best effort: the lock is read back after it is written, which turns away a writer whose write lost, but
  two writers that start within the time of one request can both proceed. A stale lock there is deleted,
  then created. A lock of another host is refused, as on disk.

A lock belongs to the process that took it: a forked child that leaves the ``with`` block neither releases
it nor needs it, and the file descriptor is not inherited across ``exec`` (a build's Ray workers write
without it). Releasing removes the lock only while it still names this host and process. The lock is not
re-entrant: a process that takes it twice is refused by itself.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import mtssl.contract.locations as loc
from mtssl.contract.atomic import HOST, json_record, process_alive
from mtssl.contract.names import LOCK_FILE

GRACE_S = 5.0  # how long a lock file may stay empty or unreadable (being written) before it counts as stale
RETRY_S = 0.05
_NO_FLOCK = (errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL)


class LockHeld(RuntimeError):
    """Another writer holds the folder: the message is one line naming it (pid, host, since, command)."""

    def __init__(self, location: str, holder: dict[str, Any] | None, lock_file: str) -> None:
        self.location, self.holder, self.lock_file = location, holder or {}, lock_file
        super().__init__(describe(location, self.holder, lock_file))

    def __reduce__(self):  # picklable like other errors, though its arguments are not its message
        return type(self), (self.location, self.holder, self.lock_file)


def describe(location: str, holder: dict[str, Any], lock_file: str) -> str:
    """One line: who holds ``location``, since when, doing what, and what to do."""
    if not holder:
        return (
            f"{location} is in use by another writer (its lock {lock_file} is unreadable); wait, or use another --out"
        )
    command = " ".join(str(holder.get("command", "?")).split())[:300]
    line = (
        f"{location} is in use by pid {holder.get('pid')} on host {holder.get('host')} since {holder.get('started')} "
        f"({holder.get('what', 'a writer')}: {command}); wait for it to finish, or use another --out"
    )
    if holder.get("host") != HOST:
        line += f" (this host cannot check that process: if it is gone, delete {lock_file})"
    return line


def lock_record(what: str) -> dict[str, Any]:
    return {
        "host": HOST,
        "pid": os.getpid(),
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "what": what,
        "command": " ".join(sys.argv),
    }


def _parse(data: bytes) -> dict[str, Any] | None:
    """The holder a lock's bytes name; None when they are empty or not a lock record."""
    try:
        holder = json.loads(data)
    except ValueError:
        return None
    if isinstance(holder, dict) and isinstance(holder.get("host"), str) and isinstance(holder.get("pid"), int):
        return holder
    return None


def _ours(holder: dict[str, Any] | None, record: dict[str, Any]) -> bool:
    return holder is not None and (holder.get("host"), holder.get("pid")) == (record["host"], record["pid"])


@dataclass
class Lock:
    """A lock this process holds: ``fd`` is the open, flocked lock file (None in a bucket)."""

    location: str
    path: str
    record: dict[str, Any]
    fd: int | None = None


# --- a folder ---------------------------------------------------------------------------------------------


def _flock(fd: int, blocking: bool = False) -> bool | None:
    """Take the exclusive flock: True, False when another process holds it, None without flock here."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
    except BlockingIOError:
        return False
    except OSError as exc:
        if exc.errno in _NO_FLOCK:
            return None
        raise
    return True


def _read_fd(fd: int) -> bytes:
    return os.pread(fd, 1 << 16, 0)


def _write_fd(fd: int, data: bytes) -> None:
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)
    os.fsync(fd)


def _create(path: Path) -> int | None:
    """The new lock file, flocked; None when one exists."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o644)
    except FileExistsError:
        return None
    _flock(fd, blocking=True)  # a writer judging it only holds the flock a moment (it is young, so not stale)
    return fd


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False


def _claim(fd: int, path: Path, location: str, deadline: float) -> bool:
    """Whether the existing lock file open as ``fd`` is stale and now ours; LockHeld when a live writer holds
    it; False to look again (it is being written, or was just released)."""
    free = _flock(fd)
    if not _same_file(fd, path):
        return False  # released, or taken over, since it was opened
    holder = _parse(_read_fd(fd))
    if free is False:  # a live process holds it
        if holder is None and time.monotonic() < deadline:
            return False  # being written
        raise LockHeld(location, holder, str(path))
    if holder is None:
        return time.time() - os.fstat(fd).st_mtime > GRACE_S
    if holder["host"] != HOST or (free is None and process_alive(holder["pid"])):
        raise LockHeld(location, holder, str(path))
    return True  # this host's, and nobody holds its flock (or, without flock, its pid is gone)


def _acquire_folder(location: str, record: dict[str, Any]) -> Lock:
    folder = loc.local(location)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_FILE
    deadline = time.monotonic() + GRACE_S
    while True:
        fd = _create(path)
        if fd is None:
            with suppress(FileNotFoundError):
                fd = os.open(path, os.O_RDWR)
            if fd is not None and not _claim_or_close(fd, path, location, deadline):
                fd = None
        if fd is not None:
            return Lock(location, str(path), record, _fill(fd, path, record))
        time.sleep(RETRY_S)


def _fill(fd: int, path: Path, record: dict[str, Any]) -> int:
    """Write our record into the lock file we hold; on failure (a full disk) remove it rather than leave it
    empty for the next writer to wait out."""
    try:
        _write_fd(fd, json_record(record))
    except BaseException:
        with suppress(OSError):
            if _same_file(fd, path):
                path.unlink()
        os.close(fd)
        raise
    return fd


def _claim_or_close(fd: int, path: Path, location: str, deadline: float) -> bool:
    try:
        if _claim(fd, path, location, deadline):
            return True
    except BaseException:
        os.close(fd)
        raise
    os.close(fd)  # also drops the flock this look took
    return False


def _release_folder(lock: Lock) -> None:
    path = Path(lock.path)
    try:
        with suppress(OSError):
            if _ours(_parse(path.read_bytes()), lock.record) and _same_file(lock.fd, path):
                path.unlink()
    finally:
        os.close(lock.fd)  # after the unlink: a writer waiting on the flock then finds the file gone


# --- a bucket ---------------------------------------------------------------------------------------------


def _read_object(fs: Any, path: str) -> tuple[dict[str, Any] | None, str | None]:
    """The holder an object names (None when there is none) and its ETag (where the store has one)."""
    fs.invalidate_cache(path)
    try:
        etag = fs.info(path).get("ETag")  # before the bytes: an If-Match on it cannot hit a newer version
        data = fs.cat_file(path)
    except FileNotFoundError:
        return None, None
    return _parse(data), etag


def _replace_object(fs: Any, path: str, data: bytes, etag: str | None) -> None:
    """Replace a stale lock object, only if it is still that version where the store can tell."""
    try:
        if etag is not None and "s3" in fs.protocol:
            fs.pipe_file(path, data, IfMatch=etag)
        else:
            with suppress(FileNotFoundError):
                fs.rm_file(path)
            fs.pipe_file(path, data, mode="create")
    except (FileExistsError, OSError):
        pass  # another writer got there first: the read-back says who


def _acquire_bucket(location: str, record: dict[str, Any]) -> Lock:
    url = loc.join(location, LOCK_FILE)
    fs, path = loc._fs(url)
    data = json_record(record)
    for _ in range(3):
        try:
            fs.pipe_file(path, data, mode="create")
        except FileExistsError:
            holder, etag = _read_object(fs, path)
            if holder is not None and (holder["host"] != HOST or process_alive(holder["pid"])):
                raise LockHeld(location, holder, url) from None
            _replace_object(fs, path, data, etag)  # unreadable (objects are whole: not being written) or stale
        holder = _read_object(fs, path)[0]
        if _ours(holder, record):
            return Lock(location, url, record)
        if holder is not None:
            raise LockHeld(location, holder, url)
    raise LockHeld(location, None, url)


def _release_bucket(lock: Lock) -> None:
    fs, path = loc._fs(lock.path)
    with suppress(OSError):
        if _ours(_read_object(fs, path)[0], lock.record):
            fs.rm_file(path)


# --- the API ----------------------------------------------------------------------------------------------


def acquire(location: str | Path, what: str = "build") -> Lock:
    """Take the lock on a folder or bucket location (see the module docstring); LockHeld, one line naming the
    holder, when another live writer has it. Prefer :func:`hold`."""
    record = lock_record(what)
    if loc.is_url(location):
        return _acquire_bucket(str(location).rstrip("/"), record)
    return _acquire_folder(str(location), record)


def release(lock: Lock) -> None:
    """Remove the lock if it is still ours; a no-op in a forked child of its holder."""
    if os.getpid() != lock.record["pid"]:
        return
    if lock.fd is None:
        _release_bucket(lock)
    else:
        _release_folder(lock)


@contextmanager
def hold(location: str | Path, what: str = "build") -> Iterator[Lock]:
    """Hold the lock on ``location`` while the block runs: ``with hold(out, what="training run"): ...``"""
    lock = acquire(location, what)
    try:
        yield lock
    finally:
        release(lock)
