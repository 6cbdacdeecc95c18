"""Contact sheets a person can check: one row per sample, drawn from the first shard of a set."""

from __future__ import annotations

from itertools import islice
from pathlib import Path

import cv2
import numpy as np

from mtssl.contract import RELPOS_CENTRE, RELPOS_GRID, RELPOS_LABELS, decode_sample, untile
from pipelines.inspect import iter_tar_samples, load_manifest
from pipelines.lab import bins_to_ab, render_lab, rgb_to_lab8

PAD = 6
WHITE = (255, 255, 255)


def _label(image: np.ndarray, text: str, origin=(4, 16), scale: float = 0.45) -> np.ndarray:
    image = np.ascontiguousarray(image)
    cv2.putText(image, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(image, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 0), 1, cv2.LINE_AA)
    return image


def _hstack(images: list[np.ndarray]) -> np.ndarray:
    height = max(i.shape[0] for i in images)
    cells = []
    for image in images:
        rgb = image if image.ndim == 3 else np.repeat(image[..., None], 3, axis=2)
        cell = np.full((height, rgb.shape[1] + PAD, 3), 255, np.uint8)
        cell[: rgb.shape[0], : rgb.shape[1]] = rgb
        cells.append(cell)
    return np.concatenate(cells, axis=1)


def _vstack(rows: list[np.ndarray]) -> np.ndarray:
    width = max(r.shape[1] for r in rows)
    padded = [np.pad(r, ((0, PAD), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    return np.concatenate(padded, axis=0)


def relpos_row(sample: dict) -> np.ndarray:
    """The nine patches with gaps, each neighbour with its pair label and the centre a C; beside them, in L."""
    patches = untile(sample["rgb.jpg"], RELPOS_GRID, RELPOS_GRID)
    labelled = [_label(p, "C" if i == RELPOS_CENTRE else str(RELPOS_LABELS[i])) for i, p in enumerate(patches)]
    rows = [_hstack(labelled[r * RELPOS_GRID : (r + 1) * RELPOS_GRID]) for r in range(RELPOS_GRID)]
    grid = _vstack(rows)
    gray_tiles = list(untile(rgb_to_lab8(sample["rgb.jpg"])[..., 0], RELPOS_GRID, RELPOS_GRID))
    gray = _vstack([_hstack(gray_tiles[r * 3 : r * 3 + 3]) for r in range(RELPOS_GRID)])
    return _hstack([grid, gray])


def color_row(sample: dict) -> np.ndarray:
    """L input, the quantized ab target rendered back to colour with that L, and the stored ab."""
    l8 = sample["l.jpg"]
    target = render_lab(l8, bins_to_ab(sample["bins.png"]))
    raw = render_lab(l8, sample["ab.npy"].astype(np.int16))
    flag = "grayscale" if sample["json"]["grayscale"] else "colour"
    return _hstack(
        [_label(np.repeat(l8[..., None], 3, 2), f"L ({flag})"), _label(target, "L + ab bins"), _label(raw, "L + ab")]
    )


def exemplar_row(sample: dict) -> np.ndarray:
    views = int(sample["rgb.jpg"].shape[1] // sample["rgb.jpg"].shape[0])
    rgb = [
        _label(v, f"{p['rotation']:+.0f}d {p['scale']:.1f}x", scale=0.35)
        for v, p in zip(untile(sample["rgb.jpg"], 1, views), sample["json"]["views"], strict=True)
    ]
    return _vstack([_hstack(rgb), _hstack(list(untile(rgb_to_lab8(sample["rgb.jpg"])[..., 0], 1, views)))])


def motion_row(sample: dict) -> np.ndarray:
    frame, mask = sample["rgb.jpg"], sample["mask.png"] > 127
    overlay = frame.copy()
    overlay[mask] = (0.5 * overlay[mask] + 0.5 * np.array([255, 0, 0])).astype(np.uint8)
    return _hstack([frame, _label(overlay, "motion mask")])


ROWS = {"relpos": relpos_row, "color": color_row, "exemplar": exemplar_row, "motion": motion_row}


def spread_keys(shard_dir: Path, count: int) -> dict[str, int] | None:
    """``count`` sample keys (-> their shard) from as many different sources as there are: one per source
    first, then a second per source, and so on. None without an index."""
    index = Path(shard_dir) / "index.parquet"
    if not index.is_file():
        return None
    import pyarrow.parquet as pq

    by_source: dict[str, list[tuple[str, int]]] = {}
    for row in pq.read_table(index, columns=["key", "source", "shard"]).to_pylist():
        by_source.setdefault(row["source"], []).append((row["key"], row["shard"]))
    sources = sorted(by_source)
    picks: list[tuple[str, int]] = []
    for depth in range(max((len(keys) for keys in by_source.values()), default=0)):
        for source in sources:
            keys = by_source[source]
            if depth < len(keys) and len(picks) < count:
                picks.append(keys[(depth * 7919 + len(keys) // 2) % len(keys)])  # not the first of each
    return dict(picks)


def contact_sheet(shard_dir: Path, count: int = 6) -> np.ndarray:
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
        samples = iter_tar_samples(Path(shard_dir) / entry["url"])
        for raw in samples if wanted is not None else islice(samples, count - len(found)):
            key = raw["__key__"].rsplit("/", 1)[-1]
            if wanted is None or key in wanted:
                found[key] = _hstack([ROWS[task](decode_sample(task, raw))])
        if len(found) >= (count if wanted is None else len(wanted)):
            break
    rows = [found[k] for k in wanted if k in found] if wanted is not None else list(found.values())
    if not rows:
        raise ValueError(f"{shard_dir} holds no samples to preview")
    sheet = _vstack(rows)
    title = np.full((28, sheet.shape[1], 3), 255, np.uint8)
    text = f"{task}: {manifest['totals']['samples']} samples in {manifest['totals']['shards']} shards"
    cv2.putText(title, text, (6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([title, sheet], axis=0)


def write_contact_sheet(shard_dir: Path, out: Path, count: int = 6) -> Path:
    sheet = contact_sheet(shard_dir, count)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(out), np.ascontiguousarray(sheet[..., ::-1])):
        raise OSError(f"could not write {out}")
    return Path(out)
