"""Contact sheets a person can check: one row per sample, drawn from the first shard of a set."""

from __future__ import annotations

import io
from itertools import islice
from pathlib import Path

import cv2
import numpy as np

from mtssl.contract import INDEX_FILE, decode_sample
from mtssl.contract import locations as loc
from pipelines.drawing import hstack, vstack
from pipelines.inspect import iter_tar_samples, load_manifest
from pipelines.recipes import RECIPES


def spread_keys(shard_dir: str | Path, count: int) -> dict[str, int] | None:
    """``count`` sample keys (-> their shard) from as many different sources as there are: one per source
    first, then a second per source, and so on. None without an index."""
    index = loc.join(shard_dir, INDEX_FILE)
    if not loc.is_file(index):
        return None
    import pyarrow.parquet as pq

    by_source: dict[str, list[tuple[str, int]]] = {}
    table = pq.read_table(io.BytesIO(loc.read_bytes(index)), columns=["key", "source", "shard"])
    for row in table.to_pylist():
        by_source.setdefault(row["source"], []).append((row["key"], row["shard"]))
    sources = sorted(by_source)
    picks: list[tuple[str, int]] = []
    for depth in range(max((len(keys) for keys in by_source.values()), default=0)):
        for source in sources:
            keys = by_source[source]
            if depth < len(keys) and len(picks) < count:
                picks.append(keys[(depth * 7919 + len(keys) // 2) % len(keys)])  # not the first of each
    return dict(picks)


def contact_sheet(shard_dir: str | Path, count: int = 6) -> np.ndarray:
    """An RGB image of ``count`` samples of the set (from different sources where the set has them: a
    motion set's first samples are often frames of one or two videos), with a title line."""
    manifest = load_manifest(shard_dir)
    task = manifest["task"]
    wanted = spread_keys(shard_dir, count)
    found: dict[str, np.ndarray] = {}
    shards = None if wanted is None else set(wanted.values())
    for number, entry in enumerate(manifest["shardlist"]):
        if shards is not None and number not in shards:
            continue
        samples = iter_tar_samples(loc.join(shard_dir, entry["url"]))
        for raw in samples if wanted is not None else islice(samples, count - len(found)):
            key = raw["__key__"].rsplit("/", 1)[-1]
            if wanted is None or key in wanted:
                recipe = RECIPES[task]
                found[key] = hstack([recipe.preview_row(decode_sample(raw, (*recipe.fields, "json")))])
        if len(found) >= (count if wanted is None else len(wanted)):
            break
    rows = [found[k] for k in wanted if k in found] if wanted is not None else list(found.values())
    if not rows:
        raise ValueError(f"{shard_dir} holds no samples to preview")
    sheet = vstack(rows)
    title = np.full((28, sheet.shape[1], 3), 255, np.uint8)
    text = f"{task}: {manifest['totals']['samples']} samples in {manifest['totals']['shards']} shards"
    cv2.putText(title, text, (6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([title, sheet], axis=0)


def write_contact_sheet(shard_dir: str | Path, out: Path, count: int = 6) -> Path:
    sheet = contact_sheet(shard_dir, count)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(out), np.ascontiguousarray(sheet[..., ::-1])):
        raise OSError(f"could not write {out}")
    return Path(out)
