"""Where shard sets live: a local folder or an fsspec URL (``s3://bucket/prefix``, ``gs://...``).

Both halves go through here. The consumer reads a set in a bucket as it reads one on disk: the
manifest, each shard's size, then each shard's bytes as the stream reaches it (one object at a time,
in memory; nothing is copied to a local disk unless a cache folder is given). The producer writes
with the guarantee each kind of store offers: on disk, write-then-rename (``mtssl.contract.atomic``);
in a bucket, an object appears only when its upload completes (a single PUT, or a multipart upload
that the store publishes on completion), so a reader never sees half an object either.

Credentials and the endpoint come from where the filesystem's library looks for them (for ``s3://``,
s3fs/botocore: ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, ``~/.aws``, and
``AWS_ENDPOINT_URL`` for S3-compatible stores); no credential is read or stored here. ``file://``
URLs and plain paths are local. Nothing here imports torch.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, TypeVar

from mtssl.contract.atomic import finish, json_record, remove_stale_tmp, tmp_path, write_bytes_atomic

T = TypeVar("T")

RETRIES = 3  # attempts per remote read before the error is raised (the stream then skips the shard)
BACKOFF_S = 0.5  # first wait between attempts; doubled each time


class LocationError(OSError):
    """A location cannot be read: missing bucket or object, refused credentials, unreachable store."""


class LocationMissing(LocationError, FileNotFoundError):
    """No such bucket, prefix or object: caught by ``except FileNotFoundError`` as a missing local file is."""


def is_url(location: str | Path) -> bool:
    """A remote location (``scheme://...``, other than ``file://``)."""
    text = str(location)
    return "://" in text and not text.startswith("file://")


def local(location: str | Path) -> Path:
    text = str(location)
    return Path(text[len("file://") :] if text.startswith("file://") else text)


def join(root: str | Path, *names: str) -> str:
    if is_url(root):
        return "/".join([str(root).rstrip("/"), *names])
    return str(local(root).joinpath(*names))


def resolve(location: str | Path) -> str:
    """The location as a set is keyed by: an absolute path, or the URL without a trailing slash."""
    return str(location).rstrip("/") if is_url(location) else str(local(location).resolve())


def _fs(url: str):
    import fsspec

    try:
        return fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as exc:
        raise LocationError(f"cannot open {url}: {exc} (s3:// needs s3fs, gs:// gcsfs)") from None


def _explain(url: str, exc: Exception) -> LocationError:
    if isinstance(exc, FileNotFoundError):
        return LocationMissing(f"{url} does not exist (check the bucket and prefix)")
    if isinstance(exc, PermissionError):
        return LocationError(f"{url}: access denied (check the credentials, e.g. AWS_ACCESS_KEY_ID / AWS_PROFILE)")
    return LocationError(f"cannot read {url}: {type(exc).__name__}: {str(exc)[:200]}")


def _retried(url: str, call: Callable[[Any, str], T], retries: int = RETRIES) -> T:
    """``call(fs, path)`` on the store of ``url``, retried with backoff on errors other than a missing
    object or refused access (those are final), then LocationError."""
    wait = BACKOFF_S
    for attempt in range(1, retries + 1):
        try:
            fs, path = _fs(url)
            return call(fs, path)
        except (FileNotFoundError, PermissionError) as exc:
            raise _explain(url, exc) from None
        except LocationError:
            raise
        except Exception as exc:  # noqa: BLE001 - network and server errors come in many types
            if attempt == retries:
                raise _explain(url, exc) from None
        time.sleep(wait)
        wait *= 2
    raise LocationError(f"cannot reach {url}: no attempt made (retries={retries})")


class NotRegularFile(LocationError):
    """A local path that holds a named pipe, a device or a socket where a file should be: never read (a FIFO
    would block the reader, a device never end)."""


def read_local(path: str | Path) -> tuple[bytes, os.stat_result]:
    """A local regular file's bytes and its stat. Opened without blocking and checked before any read, so a
    FIFO or a device put where a shard or manifest should be is :class:`NotRegularFile`, never a hang."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotRegularFile(f"{path} is not a regular file (a pipe, device or socket): replace it with the file")
        with os.fdopen(os.dup(fd), "rb") as fh:
            return fh.read(), st
    finally:
        os.close(fd)


def read_bytes(location: str | Path, retries: int = RETRIES) -> bytes:
    """A file's or object's bytes; remote reads are retried with backoff, then LocationError."""
    if not is_url(location):
        return read_local(local(location))[0]
    return _retried(str(location), lambda fs, path: fs.cat_file(path), retries)


def cached_copy(location: str | Path, cache_dir: str | Path, tag: str = "") -> Path:
    """The local copy of a remote object in ``cache_dir`` (webdataset's ``cache_dir``), fetched on first
    use. The copy's name holds ``tag`` (the manifest's md5 of the object), so a replaced object is fetched
    anew; copies are written atomically, so readers in several processes can share one folder."""
    name = str(location).rstrip("/").rsplit("/", 1)[-1]
    cached = Path(cache_dir) / f"{tag or hashlib.sha1(str(location).encode()).hexdigest()[:16]}-{name}"
    if not cached.is_file():
        data = read_bytes(location)
        cached.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(cached, data)
    return cached


def size(location: str | Path) -> int | None:
    """Bytes of a file or object; None when it does not exist."""
    if not is_url(location):
        path = local(location)
        return path.stat().st_size if path.is_file() else None
    fs, path = _fs(str(location))
    try:
        info = fs.info(path)
    except FileNotFoundError:
        return None
    except Exception as exc:  # noqa: BLE001
        raise _explain(str(location), exc) from None
    return int(info["size"]) if info.get("type") != "directory" else None


def is_file(location: str | Path) -> bool:
    return size(location) is not None


def is_dir(location: str | Path) -> bool:
    if not is_url(location):
        return local(location).is_dir()
    fs, path = _fs(str(location))
    try:
        return bool(fs.isdir(path))
    except Exception as exc:  # noqa: BLE001
        raise _explain(str(location), exc) from None


def subfolders(location: str | Path) -> list[str]:
    """The folders (prefixes) directly under a location, sorted, as locations."""
    if not is_url(location):
        return [str(p) for p in sorted(local(location).iterdir()) if p.is_dir()]
    fs, path = _fs(str(location))
    scheme = str(location).split("://", 1)[0]
    try:
        entries = fs.ls(path, detail=True, refresh=True)
    except Exception as exc:  # noqa: BLE001
        raise _explain(str(location), exc) from None
    names = sorted(e["name"].rstrip("/") for e in entries if e.get("type") == "directory")
    return [f"{scheme}://{name}" for name in names]


def listing(location: str | Path) -> dict[str, int]:
    """Name -> size of the files (objects) directly under a location; empty when it does not exist.
    One listing call in a bucket, so a resumed build learns what is done without a request per shard."""
    if not is_url(location):
        folder = local(location)
        if not folder.is_dir():
            return {}
        return {e.name: e.stat().st_size for e in os.scandir(folder) if e.is_file() and not e.name.startswith(".")}

    def ls(fs: Any, path: str) -> dict[str, int]:
        try:
            entries = fs.ls(path, detail=True, refresh=True)
        except FileNotFoundError:
            return {}
        return {e["name"].rstrip("/").rsplit("/", 1)[-1]: int(e["size"]) for e in entries if e.get("type") == "file"}

    return _retried(str(location), ls)


def write_bytes(location: str | Path, data: bytes) -> None:
    """Write a whole file or object so that no reader sees part of it (see the module docstring)."""
    if not is_url(location):
        path = local(location)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(path, data)
        return
    _retried(str(location), lambda fs, path: fs.pipe_file(path, data))


def write_json(location: str | Path, obj: Any) -> None:
    """``obj`` as the house writes JSON records (``atomic.json_record``), whole (see ``write_bytes``)."""
    write_bytes(location, json_record(obj))


STAGING = Path(tempfile.gettempdir()) / "mtssl-staging"  # local files on their way to a bucket


@contextmanager
def staged(location: str | Path) -> Iterator[Path]:
    """A local file to write ``location``'s content into; when the block ends without error it is moved
    into place (on disk: fsync and rename) or uploaded (to a bucket: one object, published whole), else
    removed. Staging files of killed processes are removed by the next one (``remove_stale_tmp``)."""
    if is_url(location):
        STAGING.mkdir(parents=True, exist_ok=True)
        remove_stale_tmp(STAGING)
        tmp = tmp_path(STAGING / str(location).rstrip("/").rsplit("/", 1)[-1])
    else:
        target = local(location)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = tmp_path(target)
    try:
        yield tmp
        if is_url(location):
            _retried(str(location), lambda fs, path: fs.put_file(str(tmp), path))
        else:
            finish(tmp, local(location))
    finally:
        tmp.unlink(missing_ok=True)


def remove(location: str | Path) -> None:
    """Remove a file or object (or a folder or prefix with everything under it); no error when absent."""
    if not is_url(location):
        path = local(location)
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        return

    def rm(fs: Any, path: str) -> None:
        with suppress(FileNotFoundError):
            fs.rm(path, recursive=True)

    _retried(str(location), rm)


def check_writable(location: str | Path) -> None:
    """Fail early, in one line, when a bucket cannot be reached or written (missing bucket, refused
    credentials, bad endpoint), before any work is done; local folders are created."""
    if not is_url(location):
        folder = local(location)
        if folder.exists() and not folder.is_dir():
            raise LocationError(f"{location} is a file, not a folder: choose a folder for the set")
        folder.mkdir(parents=True, exist_ok=True)
        return
    probe = join(location, ".mtssl-write-check")
    try:
        write_bytes(probe, b"ok")
        remove(probe)
    except LocationError as exc:
        reason = str(exc).replace(f"cannot open {probe}: ", "").replace(f"{probe}: ", "").replace(probe, "the location")
        raise LocationError(f"cannot write to {location}: {reason}") from None
