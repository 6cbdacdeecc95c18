"""Where shard sets live: a local folder or an fsspec URL (``s3://bucket/prefix``, ``gs://...``).

The consumer reads a set in a bucket as it reads one on disk: the manifest, each shard's size, then
each shard's bytes as the stream reaches it (one object at a time, in memory; nothing is copied to a
local disk). Credentials and the endpoint come from where the filesystem's library looks for them
(for ``s3://``, s3fs/botocore: ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, ``~/.aws``, and
``AWS_ENDPOINT_URL`` for S3-compatible stores); no credential is read or stored here. ``file://``
URLs and plain paths are local. Nothing here imports torch.
"""

from __future__ import annotations

import time
from pathlib import Path

RETRIES = 3  # attempts per remote read before the error is raised (the stream then skips the shard)
BACKOFF_S = 0.5  # first wait between attempts; doubled each time


class LocationError(OSError):
    """A location cannot be read: missing bucket or object, refused credentials, unreachable store."""


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
        return LocationError(f"{url} does not exist (check the bucket and prefix)")
    if isinstance(exc, PermissionError):
        return LocationError(f"{url}: access denied (check the credentials, e.g. AWS_ACCESS_KEY_ID / AWS_PROFILE)")
    return LocationError(f"cannot read {url}: {type(exc).__name__}: {str(exc)[:200]}")


def read_bytes(location: str | Path, retries: int = RETRIES) -> bytes:
    """A file's or object's bytes; remote reads are retried with backoff, then LocationError."""
    if not is_url(location):
        return local(location).read_bytes()
    url, wait = str(location), BACKOFF_S
    for attempt in range(1, retries + 1):
        try:
            fs, path = _fs(url)
            return fs.cat_file(path)
        except (FileNotFoundError, PermissionError) as exc:
            raise _explain(url, exc) from None
        except Exception as exc:  # noqa: BLE001 - network and server errors come in many types
            if attempt == retries:
                raise _explain(url, exc) from None
        time.sleep(wait)
        wait *= 2
    raise LocationError(f"cannot read {url}: no attempt made (retries={retries})")


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
