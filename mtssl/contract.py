"""The shard contract: the one module that the producer (`pipelines/`) and the consumer (`mtssl/`) share.

It fixes file names, sample fields and their encodings, the Lab convention and the schema version.
It imports neither torch nor ray, so both halves (and Ray workers) can import it cheaply.

Sample layout: every member of a sample shares the key (the file name up to its first dot), and a
member's extension fixes its encoding (:data:`DECODERS`): ``.jpg`` 8-bit JPEG (RGB or gray), ``.png`` 8- or
16-bit PNG, ``.npy`` a numpy array (never pickled), ``json`` the sample's parameters. Which fields a task
writes, and what they hold, its recipe declares (``pipelines/recipes/<task>.py``: ``RECIPE.fields`` and the
module docstring); its consumer task reads them (``mtssl/tasks/<task>.py``: ``FIELDS``). The constants both
halves of a task share (relative-position labels, the ab bins) are here.

The RGB tasks store colour only: their harmonized (L) input is a per-pixel conversion on the device
(``mtssl.inputs.rgb_to_l8``). Colorization stores its L, which must match its ab target exactly.

Lab convention (OpenCV's 8-bit conversion of sRGB, D65): ``L8 = round(L * 255 / 100)`` stored as uint8;
``a`` and ``b`` stored as int8 real values (OpenCV's uint8 value minus 128).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Collection, Iterator
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, TypedDict

import cv2
import numpy as np

SCHEMA_VERSION = 2  # what the producer writes
# Versions the consumer reads, and what changed (decoded values never did: both read as one):
# 1: the first format.
# 2: colour's bins.png is written with zlib's run-length strategy: 2% smaller and 3x faster to encode
#    than the default strategy (0.10 against 0.32 ms per 64x64 target), decoding to the same array.
READABLE_SCHEMA_VERSIONS = (1, 2)


class ShardSetError(ValueError):
    """A shard set is missing, unreadable, corrupt, of another schema, or contradicts the run's options:
    the one error both halves raise about a set, with a message that says what to do."""


MANIFEST_FILE = "manifest.json"
INDEX_FILE = "index.parquet"
REJECTS_FILE = "rejects.parquet"
PLAN_FILE = "plan.json"
PARTS_DIR = "parts"  # per-shard stats (the done markers), index and reject parts


RELPOS_GRID = 3
RELPOS_CENTRE = 4
# Label of the pair (centre, neighbour n) for neighbour n in reading order; the centre has none.
RELPOS_LABELS = {0: 0, 1: 1, 2: 2, 3: 3, 5: 4, 6: 5, 7: 6, 8: 7}
NUM_AB_BINS = 313
COLOR_TARGET_STRIDE = 4  # Zhang et al. predict ab at a quarter of the input resolution.

_KEY_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


def shard_name(task: str, index: int) -> str:
    return f"{task}-{index:06d}.tar"


def stats_name(task: str, index: int) -> str:
    """Per-shard stats file under PARTS_DIR; its presence marks the shard done (written after the tar)."""
    return f"{task}-{index:06d}.stats.json"


def sample_key(source: str, suffix: str = "") -> str:
    """A dot-free, unique, readable key for a source path (plus an optional suffix such as a frame index).

    Unsafe characters become ``_``; a short hash of the exact path keeps distinct paths distinct.
    """
    readable = _KEY_UNSAFE.sub("_", source).strip("_")[-80:]
    digest = hashlib.sha1(source.encode("utf-8")).hexdigest()[:10]
    return f"{readable}-{digest}{suffix}"


def config_hash(config: dict[str, Any]) -> str:
    """Stable hash of a resolved configuration (sorted JSON)."""
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]


def md5_file(path: str | Path) -> str:
    """The shard checksum the manifest records (``md5sum``, as ``wids`` reads it)."""
    digest = hashlib.md5()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def ab_bins() -> np.ndarray:
    """The 313 in-gamut ab bin centres of Zhang et al. (int64, shape (313, 2)); see ``assets/NOTICE``."""
    with resources.files("mtssl.assets").joinpath("pts_in_hull.npy").open("rb") as fh:
        return np.load(fh, allow_pickle=False)


# ---- encodings -------------------------------------------------------------------------------


def encode_jpeg(image: np.ndarray, quality: int = 95) -> bytes:
    """Encode an RGB (H, W, 3) or gray (H, W) uint8 image as JPEG (4:2:0 for colour)."""
    bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if image.ndim == 3 else np.ascontiguousarray(image)
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buf.tobytes()


def decode_jpeg(data: bytes, gray: bool = False) -> np.ndarray:
    """Decode JPEG bytes to RGB (H, W, 3) or gray (H, W) uint8; raises ValueError when corrupt."""
    if not gray:
        return decode_jpeg_bgr(data)[..., ::-1]
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
    if image is None:
        raise ValueError("corrupt JPEG")
    return image


def decode_jpeg_bgr(data: bytes) -> np.ndarray:
    """Decode colour JPEG bytes to OpenCV's BGR (H, W, 3) uint8, contiguous (the loader writes its planes
    into a batch in RGB order itself); raises ValueError when corrupt."""
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError("corrupt JPEG")
    return image


def encode_png(image: np.ndarray, rle: bool = False) -> bytes:
    """Lossless PNG of a uint8 or uint16 single-channel image (fixed compression: deterministic); ``rle``:
    zlib's run-length strategy, for the colour bins (smaller and faster there; see docs/shard-format.md)."""
    if image.dtype not in (np.uint8, np.uint16) or image.ndim != 2:
        raise ValueError(f"PNG fields hold 2-D uint8/uint16 arrays, got {image.dtype} {image.shape}")
    strategy = cv2.IMWRITE_PNG_STRATEGY_RLE if rle else cv2.IMWRITE_PNG_STRATEGY_DEFAULT
    ok, buf = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, 6, cv2.IMWRITE_PNG_STRATEGY, strategy])
    if not ok:
        raise ValueError("PNG encoding failed")
    return buf.tobytes()


def decode_png(data: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None or image.ndim != 2:
        raise ValueError("corrupt or non-single-channel PNG")
    return image


def encode_npy(array: np.ndarray) -> bytes:
    """``np.save``'s bytes (format 1.0), with the header made once per dtype and shape."""
    array = np.ascontiguousarray(array)
    if array.dtype.hasobject:
        raise ValueError("npy fields hold plain arrays, not Python objects")
    return _npy_header(array.dtype.str, array.shape) + array.tobytes()


@lru_cache(maxsize=64)
def _npy_header(dtype: str, shape: tuple[int, ...]) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, np.empty(shape, np.dtype(dtype)), allow_pickle=False)
    return buf.getvalue()[: len(buf.getvalue()) - math.prod(shape) * np.dtype(dtype).itemsize]


_NPY_HEADER = re.compile(rb"\{'descr': '([<>|=]?[biuf][1248])', 'fortran_order': False, 'shape': \(([0-9, ]*)\), \}")


def decode_npy(data: bytes) -> np.ndarray:
    """``.npy`` bytes to an array, never unpickling. The headers ``encode_npy`` writes (format 1.0, a plain
    numeric dtype, C order) are parsed with one regular expression and the payload taken as a buffer:
    ``np.load`` parses the header with ``ast.literal_eval``, which cost a fifth of a colour sample's
    loader time. Anything else goes through ``np.load(allow_pickle=False)``. ValueError when corrupt."""
    import io

    if data[:8] == b"\x93NUMPY\x01\x00" and len(data) >= 10:
        end = 10 + int.from_bytes(data[8:10], "little")
        match = _NPY_HEADER.match(data, 10, end)
        if match:
            dtype = np.dtype(match[1].decode())
            shape = tuple(int(n) for n in match[2].split(b",") if n.strip())
            if len(data) - end != dtype.itemsize * math.prod(shape):
                raise ValueError(f"npy payload of {len(data) - end} bytes for shape {shape} {dtype}")
            return np.frombuffer(data, dtype, offset=end).reshape(shape).copy()  # writable, as np.load's
    return np.load(io.BytesIO(data), allow_pickle=False)


def encode_json(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def decode_json(data: bytes) -> dict[str, Any]:
    return json.loads(data)


DECODERS = {
    "rgb.jpg": decode_jpeg,
    "l.jpg": lambda data: decode_jpeg(data, gray=True),
    "bins.png": decode_png,
    "mask.png": decode_png,
    "ab.npy": decode_npy,
    "json": decode_json,
}


def decode_sample(sample: dict[str, Any], fields: tuple[str, ...]) -> dict[str, Any]:
    """Decode the raw bytes of one sample (as read from a tar) into numpy arrays and dicts: the given
    fields (each task's recipe lists what it writes), by their extension's decoder.

    Raises ValueError when a field is missing or fails to decode. Never unpickles.
    """
    out: dict[str, Any] = {"__key__": sample.get("__key__")}
    for field in fields:
        if field not in sample:
            raise ValueError(f"sample {sample.get('__key__')!r} lacks field {field!r}")
        out[field] = DECODERS[field](sample[field])
    return out


# ---- the manifest -----------------------------------------------------------------------------------


class ShardEntry(TypedDict):
    """One shard of ``Manifest.shardlist``, in the shape ``wids`` reads."""

    url: str
    nsamples: int
    filesize: int
    md5sum: str


class Manifest(TypedDict, total=False):
    """``manifest.json``, written last by the producer (``pipelines/manifest.py``): its named fields.

    The required ones are :data:`REQUIRED_KEYS`; a task's summaries (the colour set's ``ab_counts`` and
    ``ab_prior``) come from its recipe's ``summarize``.
    """

    __kind__: str  # "wids-shard-index-v1"
    wids_version: int
    name: str
    task: str
    schema_version: int
    config: dict[str, Any]  # the resolved build config (``config["recipe"]``: the recipe config's fields)
    config_hash: str
    versions: dict[str, str]
    source: dict[str, Any]  # root, inputs, inputs_hash
    shardlist: list[ShardEntry]
    totals: dict[str, Any]  # shards, samples, rejected, filtered, bytes, bytes_per_sample
    rejects: dict[str, int]
    filtered: dict[str, int]
    ab_counts: list[int]
    ab_prior: list[float]


REQUIRED_KEYS = ("task", "schema_version", "config", "shardlist", "totals")


def parse_manifest(data: bytes, path: str, rebuild_hint: str) -> Manifest:
    """The one manifest reader: JSON, the required fields, a readable schema version; ``ShardSetError``
    otherwise (``rebuild_hint``: the command that rebuilds the set, ``{task}`` standing for its task)."""
    try:
        manifest = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ShardSetError(f"{path} is corrupt (not valid JSON: {exc}); rebuild the set with --overwrite") from exc
    missing = [key for key in REQUIRED_KEYS if key not in manifest] if isinstance(manifest, dict) else REQUIRED_KEYS
    if missing:
        raise ShardSetError(f"{path} is corrupt (lacks {', '.join(missing)}); rebuild the set with --overwrite")
    if manifest["schema_version"] not in READABLE_SCHEMA_VERSIONS:
        raise ShardSetError(
            f"{path}: shard schema version {manifest['schema_version']}, but this mtssl reads versions "
            f"{', '.join(map(str, READABLE_SCHEMA_VERSIONS))}. Rebuild the set with this version: "
            + rebuild_hint.replace("{task}", str(manifest["task"]))
        )
    return manifest


# ---- the tar layout --------------------------------------------------------------------------------


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


# ---- tilings ---------------------------------------------------------------------------------


def tile(images: list[np.ndarray], cols: int) -> np.ndarray:
    """Tile equally sized images row-major into one image with ``cols`` columns."""
    rows = [np.concatenate(images[r : r + cols], axis=1) for r in range(0, len(images), cols)]
    return np.concatenate(rows, axis=0)


def untile(image: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Inverse of :func:`tile`: (rows*h, cols*w, ...) -> (rows*cols, h, w, ...)."""
    h, w = image.shape[0] // rows, image.shape[1] // cols
    parts = image.reshape(rows, h, cols, w, *image.shape[2:]).swapaxes(1, 2)
    return parts.reshape(rows * cols, h, w, *image.shape[2:])
