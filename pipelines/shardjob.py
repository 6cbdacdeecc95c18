"""Building one shard: the unit of work that runs in-process or as a Ray task.

For the inputs of shard ``i``: load each, run the task's recipe, write the samples in webdataset's
layout, byte for byte what its ``TarWriter`` writes (``pipelines.tarwriter``; fixed mtime, so
identical inputs give identical bytes) to a temporary name, rename it
into place, then write the shard's index and reject parts and, last, its stats file, which marks the
shard done. A kill at any point leaves either a finished shard or nothing that a rerun will trust.
"""

from __future__ import annotations

import hashlib
import json
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mtssl.contract import PARTS_DIR, encode_json, sample_key, shard_name, stats_name
from pipelines.atomic import finish, tmp_path, write_json_atomic
from pipelines.errors import Reject
from pipelines.imageio import load_rgb
from pipelines.recipes import RECIPES
from pipelines.recipes.base import RecipeOutput, from_plain
from pipelines.sources import display_name, name_problem
from pipelines.tarwriter import ShardWriter

TAR_MTIME = 946684800  # 2000-01-01: a fixed member time keeps the bytes reproducible
INDEX_SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        ("shard", pa.int32()),
        ("source", pa.string()),
        ("frame", pa.int32()),  # frame index for video tasks, -1 for images
        ("label", pa.string()),
        ("source_mode", pa.string()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("params", pa.string()),
    ]
)
REJECT_SCHEMA = pa.schema(
    [
        ("source", pa.string()),
        ("shard", pa.int32()),
        ("frame", pa.int32()),  # the frame a filtered or failed row is about, -1 for a whole input
        ("kind", pa.string()),  # "rejected" (unusable input) or "filtered" (a frame the task's filter drops)
        ("reason", pa.string()),
        ("detail", pa.string()),
    ]
)


@dataclass
class ShardResult:
    samples: list[tuple[str, RecipeOutput]] = field(default_factory=list)
    index_rows: list[dict[str, Any]] = field(default_factory=list)
    reject_rows: list[dict[str, Any]] = field(default_factory=list)
    counts: dict[str, np.ndarray] = field(default_factory=dict)

    def reject(
        self, source: str, shard: int, reason: str, detail: str = "", frame: int = -1, kind: str = "rejected"
    ) -> None:
        self.reject_rows.append(
            {"source": source, "shard": shard, "frame": frame, "kind": kind, "reason": reason, "detail": detail}
        )

    def add(self, key: str, output: RecipeOutput, row: dict[str, Any]) -> None:
        self.samples.append((key, output))
        self.index_rows.append({"key": key, "frame": -1, **row, "params": output.fields["json"].decode()})
        for name, value in output.counts.items():
            self.counts[name] = self.counts.get(name, 0) + value


def unit_source(unit: Any) -> str:
    """The input a work unit comes from: an image path, or a video segment's video (as written to the
    index and the rejects: non-UTF-8 bytes escaped)."""
    return display_name(unit if isinstance(unit, str) else unit["source"])


def label_of(source: str) -> str:
    """The class folder of an ImageNet-layout path (empty at the root)."""
    head, sep, _ = source.partition("/")
    return head if sep else ""


def internal_error(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc} | {traceback.format_exc(limit=3)[-400:]}"


def sample_rng(seed: int, task: str, source: str) -> np.random.Generator:
    """Per-sample randomness from (seed, task, source): independent of the shard split and worker."""
    words = [int.from_bytes(hashlib.sha256(f"{task}\0{source}".encode()).digest()[:8], "little"), seed]
    return np.random.default_rng(np.random.SeedSequence(words))


def make_one(task: str, config: dict[str, Any], root: Path, source: str) -> tuple[RecipeOutput, Any]:
    recipe = RECIPES[task]
    cfg = recipe_config(task, config)
    image = load_rgb(
        root / source,
        max_pixels=config["max_pixels"],
        min_side=recipe.min_source_side(cfg),
        draft_side=recipe.draft_side(cfg),
    )
    output = recipe.make_sample(image.rgb, sample_rng(config["seed"], task, source), cfg)
    return output, image


def recipe_config(task: str, config: dict[str, Any]) -> Any:
    """The task's config dataclass from the build config (parsed once per worker, not per sample)."""
    return _parsed_config(task, json.dumps(config["recipe"], sort_keys=True))


@lru_cache(maxsize=16)
def _parsed_config(task: str, recipe_json: str) -> Any:
    return from_plain(RECIPES[task].config_type, json.loads(recipe_json))


def process_images(task: str, config: dict[str, Any], root: Path, index: int, sources: list[str]) -> ShardResult:
    """Run the recipe on every image; each ends as a sample or a reject row, never an exception."""
    result = ShardResult()
    for source in sources:
        problem = name_problem(source)
        if problem is not None:
            result.reject(display_name(source), index, *problem)
            continue
        try:
            output, image = make_one(task, config, root, source)
        except Reject as exc:
            result.reject(source, index, exc.reason, exc.detail)
            continue
        except Exception as exc:  # a recipe bug must not stop the build: record it with its trace
            result.reject(source, index, "internal error", internal_error(exc))
            continue
        output.fields["json"] = encode_json({**output.params, "source": source})
        row = {
            "shard": index,
            "source": source,
            "label": label_of(source),
            "source_mode": image.source_mode,
            "width": image.source_size[0],
            "height": image.source_size[1],
        }
        result.add(sample_key(source), output, row)
    return result


def process_units(task: str, config: dict[str, Any], root: Path, index: int, units: list[Any]) -> ShardResult:
    if config.get("source_kind", "images") == "videos":
        from pipelines.recipes.motion import process_segments

        return process_segments(config, root, index, units)
    return process_images(task, config, root, index, units)


def summarize_counts(task: str, counts: dict[str, np.ndarray]) -> dict[str, Any]:
    """Task summaries for the manifest (the colour set's ab prior); video tasks have none."""
    return RECIPES[task].summarize(counts) if task in RECIPES else {}


class _HashingFile:
    """A write-only file that also feeds every byte to MD5, so the checksum needs no second read."""

    def __init__(self, stream: Any) -> None:
        self.stream, self.md5 = stream, hashlib.md5()

    def write(self, data: bytes) -> int:
        self.md5.update(data)
        return self.stream.write(data)

    def flush(self) -> None:
        self.stream.flush()


def write_tar(path: Path, samples: list[tuple[str, RecipeOutput]]) -> tuple[int, str]:
    """Write samples (webdataset's layout and bytes, see ``pipelines.tarwriter``) to a temporary file,
    move it into place; (size, md5)."""
    tmp = tmp_path(path)
    with open(tmp, "wb") as stream:
        hashing = _HashingFile(stream)
        with ShardWriter(hashing, mtime=TAR_MTIME) as writer:
            for key, output in samples:
                writer.write(key, output.fields)
    finish(tmp, path)
    return path.stat().st_size, hashing.md5.hexdigest()


def write_parquet(path: Path, rows: list[dict[str, Any]], schema: pa.Schema) -> None:
    tmp = tmp_path(path)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), tmp)
    finish(tmp, path)


def build_shard(task: str, config: dict[str, Any], root: str, out: str, index: int, units: list[Any]) -> dict[str, Any]:
    """Build shard ``index`` from its work units and return its stats (also written as its done marker)."""
    import cv2

    cv2.setNumThreads(1)  # one worker, one core: OpenCV's own threads would oversubscribe
    start = time.perf_counter()
    out_dir, name = Path(out), shard_name(task, index)
    result = process_units(task, config, Path(root), index, units)
    filesize, md5sum = write_tar(out_dir / name, result.samples)
    parts = out_dir / PARTS_DIR
    write_parquet(parts / f"{Path(name).stem}.index.parquet", result.index_rows, INDEX_SCHEMA)
    write_parquet(parts / f"{Path(name).stem}.rejects.parquet", result.reject_rows, REJECT_SCHEMA)
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
    write_json_atomic(parts / stats_name(task, index), stats)
    return stats
