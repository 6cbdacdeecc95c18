"""Contact sheets a person can check: one row per sample, drawn at random across the set's sources.

The draw (:func:`spread_keys`) reads the set's ``index.parquet``, which names every sample's source: an image
set's samples are grouped by class (the image's folder, the index's ``label``), a video set's by video. It
shuffles the groups and each group's samples with one seed, then takes one sample of each group in turn, so a
sheet of six rows shows six classes (or videos) where the set has them, and not the first source by name."""

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

PREVIEW_FILE = "preview.png"  # in the set's folder: the picture mtssl-report shows for the set


def spread_keys(shard_dir: str | Path, count: int, seed: int = 0) -> dict[str, int] | None:
    """``count`` sample keys (-> their shard) drawn across the set's sources by a seeded shuffle: one of each
    class (image set) or video (video set) in a random order, then a second of each, and so on; each group's
    samples in a random order. A larger ``count`` with the same seed extends the smaller one's draw. None
    without an index."""
    index = loc.join(shard_dir, INDEX_FILE)
    if not loc.is_file(index):
        return None
    import pyarrow.parquet as pq

    videos = RECIPES[load_manifest(shard_dir)["task"]].source == "videos"
    table = pq.read_table(io.BytesIO(loc.read_bytes(index)))
    columns = ["key", "source", "shard"] + (["label"] if "label" in table.column_names else [])
    groups: dict[str, list[tuple[str, int]]] = {}
    for row in table.select(columns).to_pylist():
        group = row["source"] if videos else row.get("label") or row["source"].rpartition("/")[0] or row["source"]
        groups.setdefault(group, []).append((row["key"], row["shard"]))
    rng = np.random.default_rng(seed)
    names = sorted(groups)
    order = [names[i] for i in rng.permutation(len(names))]
    drawn: dict[str, list[tuple[str, int]]] = {}
    for name in order:
        keys = sorted(groups[name])
        drawn[name] = [keys[i] for i in rng.permutation(len(keys))]
    picks: list[tuple[str, int]] = []
    for depth in range(max((len(keys) for keys in drawn.values()), default=0)):
        for name in order:
            if depth < len(drawn[name]) and len(picks) < count:
                picks.append(drawn[name][depth])
    return dict(picks)


def contact_sheet(shard_dir: str | Path, count: int = 6, seed: int = 0) -> np.ndarray:
    """An RGB image of ``count`` samples of the set, drawn across its classes or videos (``spread_keys``),
    with a title line."""
    manifest = load_manifest(shard_dir)
    task = manifest["task"]
    wanted = spread_keys(shard_dir, count, seed)
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
    text += f"; {len(rows)} drawn at random (seed {seed})" if wanted is not None else f"; the first {len(rows)}"
    cv2.putText(title, text, (6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([title, sheet], axis=0)


def default_out(shard_dir: str | Path, task: str) -> Path:
    """Where ``mtssl-data preview`` writes without ``--out``: the set's own ``preview.png`` (what mtssl-report
    shows); for a set in a bucket, ``preview-TASK.png`` in the current folder."""
    return Path(f"preview-{task}.png") if loc.is_url(shard_dir) else loc.local(shard_dir) / PREVIEW_FILE


def write_contact_sheet(shard_dir: str | Path, out: Path, count: int = 6, seed: int = 0) -> Path:
    sheet = contact_sheet(shard_dir, count, seed)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(out), np.ascontiguousarray(sheet[..., ::-1])):
        raise OSError(f"could not write {out}")
    return Path(out)
