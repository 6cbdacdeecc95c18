"""The tar layout of a shard and the one reader of both halves."""

from __future__ import annotations

from collections.abc import Collection, Iterator
from typing import Any


def _octal(field: bytes) -> int:
    return int(field.split(b"\0", 1)[0].strip() or b"0", 8)


def tar_members_of(
    data: bytes, path: str, wanted: Collection[str] | None = None, checked: bool = False
) -> Iterator[tuple[str, str, bytes]]:
    """(key, field, bytes) of the regular members of a shard's bytes whose field is ``wanted`` (all when None).

    The one tar reader of both halves, for the layout the producer writes (ustar headers, pax records for
    long names): members of other fields are passed over without being copied (Python's ``tarfile`` in
    stream mode costs about 35 us per member against 5). A header that is not ustar, fails its checksum
    or names its member in bytes that are not UTF-8, or a member that runs past the end, raises
    ValueError naming the shard and the offset. ``checked``: the bytes matched the manifest's md5, so the
    header checksums (which only a damaged file fails) are not summed again."""
    long_name, pos, end = None, 0, len(data)
    while pos + 512 <= end and data[pos : pos + 512] != _ZERO_BLOCK:
        if data[pos + 257 : pos + 262] != b"ustar" or not (checked or _checksum_ok(data[pos : pos + 512])):
            raise ValueError(f"{path}: damaged tar header at byte {pos}")
        size, kind = _octal(data[pos + 124 : pos + 136]), data[pos + 156 : pos + 157]
        header, start, pos = pos, pos + 512, pos + 512 + ((size + 511) & ~511)
        if pos > end:
            raise ValueError(f"{path}: member at byte {header} runs past the end of the shard")
        if kind == b"x":  # pax extended header: may carry the next member's long name
            records = data[start : start + size].decode("utf-8", "replace")
            long_name = next((r.split("=", 1)[1] for r in records.split("\n") if " path=" in r), None)
            continue
        name = long_name or _ustar_name(data, header)
        long_name = None
        base = name.rsplit("/", 1)[-1]
        key, _, field = base.partition(".")
        if kind in (b"0", b"\0") and (wanted is None or field in wanted):
            yield name[: len(name) - len(base)] + key, field, data[start : start + size]


_ZERO_BLOCK = bytes(512)


def _checksum_ok(header: bytes) -> bool:
    """POSIX: the header's byte sum with its 8 checksum bytes counted as spaces equals the stored octal."""
    try:
        stored = _octal(header[148:156])
    except ValueError:
        return False
    return stored == sum(header) - sum(header[148:156]) + 8 * 32


def _ustar_name(data: bytes, at: int = 0) -> str:
    """The member name of the ustar header at byte ``at`` (its prefix field joined on when set)."""
    try:
        name = data[at : at + 100].split(b"\0", 1)[0].decode("utf-8")
        prefix = data[at + 345 : at + 500].split(b"\0", 1)[0].decode("utf-8") if data[at + 345] else ""
    except UnicodeDecodeError as exc:
        raise ValueError(f"member name is not UTF-8: {exc}") from None
    return f"{prefix}/{name}" if prefix else name


def tar_samples_of(data: bytes, path: str) -> Iterator[dict[str, Any]]:
    """The samples of a shard's bytes (``{"__key__": key, field: bytes}``, grouped by key as webdataset does)."""
    current: dict[str, Any] | None = None
    for key, field, payload in tar_members_of(data, path):
        if current is None or current["__key__"] != key:
            if current is not None:
                yield current
            current = {"__key__": key}
        current[field] = payload
    if current is not None:
        yield current
