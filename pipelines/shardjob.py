"""Building one shard: the unit of work that runs in-process or as a Ray task.

For the inputs of shard ``i``: load each, run the task's recipe, write the samples in webdataset's
layout, byte for byte what its ``TarWriter`` writes (``pipelines.tarwriter``; fixed mtime, so
identical inputs give identical bytes) to a temporary name, rename it into place (or upload it, when
the set is in a bucket: ``mtssl.contract.locations.staged``), then write the shard's index and reject
parts and, last, its stats file, which marks the shard done. A kill at any point leaves either a
finished shard or nothing that a rerun will trust.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mtssl.contract import PARTS_DIR, shard_name, stats_name
from mtssl.contract import locations as loc
from pipelines.driver_watch import watch
from pipelines.recipes import RECIPES
from pipelines.recipes.base import RecipeOutput
from pipelines.shard_result import INDEX_SCHEMA, REJECT_SCHEMA, ShardResult
from pipelines.tarwriter import ShardWriter
from pipelines.units import KINDS

TAR_MTIME = 946684800  # 2000-01-01: a fixed member time keeps the bytes reproducible


def process_units(task: str, config: dict[str, Any], root: Path, index: int, units: list[Any]) -> ShardResult:
    """Run shard ``index``'s work units through the task's recipe (``pipelines.units`` by its source)."""
    recipe = RECIPES[task]
    return KINDS[recipe.source].process(recipe, config, root, index, units)


def summarize_counts(task: str, counts: dict[str, np.ndarray]) -> dict[str, Any]:
    """Task summaries for the manifest (the colour set's ab prior)."""
    return RECIPES[task].summarize(counts)


class _HashingFile:
    """A write-only file that also feeds every byte to MD5, so the checksum needs no second read."""

    def __init__(self, stream: Any) -> None:
        self.stream, self.md5 = stream, hashlib.md5()

    def write(self, data: bytes) -> int:
        self.md5.update(data)
        return self.stream.write(data)

    def flush(self) -> None:
        self.stream.flush()


def write_tar(location: str, samples: list[tuple[str, RecipeOutput]]) -> tuple[int, str]:
    """Write samples (webdataset's layout and bytes, see ``pipelines.tarwriter``) to a temporary file,
    move or upload it into place; (size, md5)."""
    with loc.staged(location) as tmp, open(tmp, "wb") as stream:
        hashing = _HashingFile(stream)
        with ShardWriter(hashing, mtime=TAR_MTIME) as writer:
            for key, output in samples:
                writer.write(key, output.fields)
        stream.flush()
        filesize = stream.tell()
    return filesize, hashing.md5.hexdigest()


def write_parquet(location: str, rows: list[dict[str, Any]], schema: pa.Schema) -> None:
    with loc.staged(location) as tmp:
        pq.write_table(pa.Table.from_pylist(rows, schema=schema), tmp)


def build_shard(
    task: str,
    config: dict[str, Any],
    root: str,
    out: str,
    index: int,
    units: list[Any],
    driver: tuple[str, int] | None = None,
) -> dict[str, Any]:
    """Build shard ``index`` from its work units and return its stats (also written as its done marker).

    ``driver``: the (host, pid) of the build's driver when this runs as a Ray task; the worker ends when
    the driver dies (``pipelines.driver_watch``)."""
    import cv2

    watch(driver)
    cv2.setNumThreads(1)  # one worker, one core: OpenCV's own threads would oversubscribe
    start = time.perf_counter()
    name = shard_name(task, index)
    result = process_units(task, config, Path(root), index, units)
    filesize, md5sum = write_tar(loc.join(out, name), result.samples)
    parts = loc.join(out, PARTS_DIR)
    write_parquet(loc.join(parts, f"{Path(name).stem}.index.parquet"), result.index_rows, INDEX_SCHEMA)
    write_parquet(loc.join(parts, f"{Path(name).stem}.rejects.parquet"), result.reject_rows, REJECT_SCHEMA)
    stats = {
        "shard": index,
        "url": name,
        "nsamples": len(result.samples),
        "filesize": filesize,
        "md5sum": md5sum,
        "inputs": len(units),
        "rejects": dict(sorted(Counter(r["reason"] for r in result.reject_rows if r["kind"] == "rejected").items())),
        "filtered": dict(sorted(Counter(r["reason"] for r in result.reject_rows if r["kind"] == "filtered").items())),
        "counts": {k: np.asarray(v).astype(int).tolist() for k, v in sorted(result.counts.items())},
        "duration_s": round(time.perf_counter() - start, 3),
    }
    loc.write_json(loc.join(parts, stats_name(task, index)), stats)
    return stats
