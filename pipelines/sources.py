"""Listing the inputs of a build: every file under an image tree, in a stable order.

Symlinked directories are followed, but a directory already visited (a symlink loop, or two links to
one folder) is entered once only, so listing always ends. Every listed file is an input: it ends in
a shard or in the reject list.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path


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
    found: list[str] = []
    visited: set[tuple[int, int]] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        st = os.stat(dirpath)
        if (st.st_dev, st.st_ino) in visited:
            dirnames.clear()
            continue
        visited.add((st.st_dev, st.st_ino))
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        rel = Path(dirpath).relative_to(root)
        found.extend((rel / name).as_posix() for name in filenames)
    return sorted(found)


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
    """sha256 (first 16 hex digits) of the files' bytes in order; "" when one cannot be read."""
    digest = hashlib.sha256()
    try:
        for relpath in relpaths:
            with open(Path(root) / relpath, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(block)
    except OSError:
        return ""
    return digest.hexdigest()[:16]


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
