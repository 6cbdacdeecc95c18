"""Listing the inputs of a build: every file under an image tree, in a stable order.

Symlinked directories are followed, but a directory already visited (a symlink loop, or two links to
one folder) is entered once only, so listing always ends. Every listed file is an input: it ends in
a shard or in the reject list.

Listing reads directory entries only. Every read of an input goes through :func:`open_regular`: only a
regular file (or a symlink to one) is opened, and it is opened without blocking, so a named pipe, a device
or a socket in a tree is a reject with its kind, never a build that waits or reads without end.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from mtssl.contract.frames import walk_tree
from pipelines.errors import Reject, check_still_there

NOT_REGULAR = "not a regular file"
# A worker holds an image file whole in memory: 1 GiB is above any image max_pixels lets through (100 Mpx of
# uncompressed 16-bit RGBA is 800 MB) and far above any photo.
MAX_IMAGE_BYTES = 1 << 30
# PyAV streams a video, so memory is not at stake: this only refuses what no recording is (a disk image
# named .mkv). An hour of 4K ProRes 422 HQ is about 320 GB.
MAX_VIDEO_BYTES = 1 << 40
_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


@dataclass(frozen=True)
class Source:
    """One input file: its path relative to the tree root (posix) and its class folder."""

    relpath: str

    @property
    def label(self) -> str:
        """The class of an ImageNet-layout tree: the first folder (empty for files at the root)."""
        head, sep, _ = self.relpath.partition("/")
        return head if sep else ""


def walk_files(root: Path) -> list[str]:
    """Relative posix paths of all files under ``root`` outside hidden folders, sorted; safe against
    symlink loops. Hidden files and names that are not UTF-8 are listed: the build rejects them with
    their reason (:func:`name_problem`), so they are counted, not lost."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"folder not found: {root}")
    return walk_tree(root)


def display_name(relpath: str) -> str:
    """``relpath`` as it can be written to JSON and Parquet: bytes that are not UTF-8 (which Python keeps
    as surrogate escapes) shown as ``\\xNN``."""
    return relpath.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def name_problem(relpath: str) -> tuple[str, str] | None:
    """(reason, detail) when an input is rejected for its name alone, else None."""
    if display_name(relpath) != relpath:
        return "file name not UTF-8", "rename it to valid UTF-8 (its other bytes are shown as \\xNN)"
    if relpath.rsplit("/", 1)[-1].startswith("."):
        return "hidden file", "its name starts with a dot; rename it to build it"
    return None


def list_image_tree(root: Path) -> list[Source]:
    """All files under ``root`` outside hidden folders, sorted by relative path: each one is an input."""
    return [Source(path) for path in walk_files(root)]


def file_kind(mode: int) -> str:
    """What a file that is not regular is, in words, from its ``st_mode``."""
    return next((name for is_kind, name in _KINDS if is_kind(mode)), f"file type {stat.S_IFMT(mode):#o}")


def check_regular(st: os.stat_result, max_bytes: int | None) -> None:
    """Reject what is not a regular file, and a file over ``max_bytes`` (None: no cap)."""
    if not stat.S_ISREG(st.st_mode):
        raise Reject(NOT_REGULAR, file_kind(st.st_mode))
    if max_bytes is not None and st.st_size > max_bytes:
        raise Reject("too large", f"{st.st_size} bytes exceeds max_bytes={max_bytes}")


def unreadable(path: str | Path, exc: OSError) -> Reject:
    """The reject for an input that failed to open; InputVanished when nothing is at ``path`` any more."""
    if exc.errno == errno.ELOOP:
        return Reject("unreadable", "symlink loop")
    if exc.errno == errno.ENOENT:
        check_still_there(path)
        return Reject("unreadable", "missing file or broken symlink")
    return Reject("unreadable", exc.strerror or str(exc))


@contextmanager
def open_regular(path: str | Path, max_bytes: int | None) -> Iterator[tuple[int, int]]:
    """(descriptor, size) of the regular file at ``path`` (symlinks followed), closed on exit; Reject for
    anything else, or for a file over ``max_bytes``.

    The path is checked before it is opened, so a device is never opened (opening one can have effects),
    and opened with O_NONBLOCK, so a FIFO swapped in after the check cannot block the open; what was
    opened is then checked again, so it is that regular file that gets read.
    """
    try:
        check_regular(os.stat(path), max_bytes)
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise unreadable(path, exc) from exc
    try:
        st = os.fstat(fd)
        check_regular(st, max_bytes)
        yield fd, st.st_size
    finally:
        os.close(fd)


def read_regular(path: str | Path, max_bytes: int) -> bytes:
    """The bytes of a regular file of at most ``max_bytes`` (:func:`open_regular`); a file that grows past
    the cap while it is read is rejected too, having been read no further than one byte over it."""
    with open_regular(path, max_bytes) as (fd, size):
        try:
            data = _read_at_most(fd, max_bytes + 1, size + 1)
        except OSError as exc:  # an I/O error after the open
            raise Reject("unreadable", exc.strerror or str(exc)) from exc
    if len(data) > max_bytes:
        raise Reject("too large", f"grew past max_bytes={max_bytes} while it was read")
    return data


def _read_at_most(fd: int, limit: int, first: int) -> bytes:
    """Up to ``limit`` bytes from ``fd``, asking for ``first`` bytes at once (the size plus one: one read and
    an end-of-file for a file that does not change)."""
    chunks, total = [], 0
    while total < limit:
        chunk = os.read(fd, min(limit - total, max(first - total, 1 << 16)))
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    return b"".join(chunks)


def fd_path(fd: int) -> str | None:
    """A path that opens the file behind ``fd`` itself, whatever is at its old path now (for a library that
    opens by name, like FFmpeg); None where the system has none."""
    for folder in ("/proc/self/fd", "/dev/fd"):
        if os.path.isdir(folder):
            return f"{folder}/{fd}"
    return None


def inputs_hash(
    relpaths: list[str], stats: list[tuple[int, int]] | None = None, contents: list[str] | None = None
) -> str:
    """Fingerprint of the input list (and, given, each file's size and modification time, and its content
    digest with ``--rehash``), so a resumed build can tell that its inputs changed."""
    digest = hashlib.sha256()
    for k, relpath in enumerate(relpaths):
        digest.update(relpath.encode("utf-8", "surrogateescape") + b"\0")
        if stats is not None:
            digest.update(b"%d:%d\0" % stats[k])
        if contents is not None:
            digest.update(contents[k].encode() + b"\0")
    return digest.hexdigest()[:16]


def content_digest(root: Path, relpaths: list[str]) -> str:
    """sha256 (first 16 hex digits) of the files' bytes in order; "" when one cannot be read or is not a
    regular file (never opened then: a FIFO would block, a device never end)."""
    digest = hashlib.sha256()
    try:
        for relpath in relpaths:
            with open_regular(Path(root) / relpath, None) as (fd, _):
                _hash_to_end(digest, fd)
    except (OSError, Reject):
        return ""
    return digest.hexdigest()[:16]


def _hash_to_end(digest: hashlib._Hash, fd: int) -> None:
    while block := os.read(fd, 1 << 20):
        digest.update(block)


def file_stats(root: Path, relpaths: list[str]) -> list[tuple[int, int]]:
    """(size, modification time in ns) of each file; (-1, -1) for one that vanished since the listing."""
    out = []
    for relpath in relpaths:
        try:
            st = os.stat(Path(root) / relpath)
            out.append((st.st_size, st.st_mtime_ns))
        except OSError:
            out.append((-1, -1))
    return out


def describe_changes(before: dict[str, tuple[int, int]], now: dict[str, tuple[int, int]], shown: int = 3) -> str:
    """A short account of what differs between two {relpath: (size, mtime_ns)} listings."""

    def names(paths: list[str]) -> str:
        return ", ".join(paths[:shown]) + (", ..." if len(paths) > shown else "")

    changed = sorted(p for p in before.keys() & now.keys() if before[p] != now[p])
    added, removed = sorted(now.keys() - before.keys()), sorted(before.keys() - now.keys())
    parts = []
    if changed:
        first = changed[0]
        detail = f" ({first}: size {before[first][0]} -> {now[first][0]})" if before[first][0] != now[first][0] else ""
        parts.append(f"{len(changed)} changed: {names(changed)}{detail}")
    if added:
        parts.append(f"{len(added)} added: {names(added)}")
    if removed:
        parts.append(f"{len(removed)} gone: {names(removed)}")
    return "; ".join(parts) or "the same files in another order"
