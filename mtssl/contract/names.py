"""The contract's names: schema versions, file and shard names, the key rule, the constants both halves
of a task share, and the one error about a shard set."""

from __future__ import annotations

import hashlib
import json
import re
from importlib import resources
from pathlib import Path
from typing import Any

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
LOCK_FILE = ".mtssl.lock"  # a writer's advisory lock (``locks``); hidden, so listings and verify skip it


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
