"""Motion-mask settings chosen by leave-sequences-out cross-validation over the real DAVIS train sequences.

    .venv/bin/python benchmarks/motion_cv.py [--data ../shared/data/davis-train ../shared/data/davis-train-more]
        [--folds 5] [--seed 0] [--only BASE ...] [--cache /tmp/motion-cv.json] [--json OUT]

Every setting of a grid is scored on every sequence as ``mtssl-data score-motion`` scores it (256-px working
size, every frame with a partner, J = mean IoU over a sequence's frames with ground truth, the mean over
sequences; kept share, recall and precision over the frames the build keeps), with the masks the build
stores (:class:`pipelines.motion.clip.ClipMasks`). The grid is the per-frame settings (``BASES``: the flow's
finest pyramid level, GrabCut's resolution) crossed with the clip's vote (``VOTES``: radius and share);
each frame's per-frame mask is computed once per base and shared by its votes.

Cross-validation: the sequences are dealt into ``--folds`` folds (shuffled with ``--seed``); for each fold
the setting with the best J over the other folds' sequences is chosen and scored on the fold's. The
cross-validated J is the mean over all sequences of their held-out J (each scored by a setting chosen
without it). Three grids are cross-validated: ``default`` (the settings a build runs at >= 15 considered
frames/s per core: half-resolution flow, GrabCut at 1/3 or 1/2, no vote), ``per frame`` (no vote) and
``all``. A sequence whose ground truth is empty on every frame is left out, as ``score-motion`` leaves it
out of J.

Per-sequence results go to ``--cache`` as they are computed; a rerun computes only what is missing, so the
grid can be run a base at a time (``--only``) within a time limit. ``--json`` writes the tables' figures.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mtssl.contract.frames import iou, load_ground_truth  # noqa: E402
from pipelines.motion.camera import make_flow  # noqa: E402
from pipelines.motion.clip import ClipMasks  # noqa: E402
from pipelines.motion.config import QUALITY, MaskConfig  # noqa: E402
from pipelines.motion.evaluate import sequence_name  # noqa: E402
from pipelines.motion.pairing import filter_reason, pairing_reason  # noqa: E402
from pipelines.motion.score import aggregate_rows, partners, recall_precision  # noqa: E402
from pipelines.videos import OPEN_END, iter_frames, list_video_tree  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
DATA = (SHARED / "davis-train", SHARED / "davis-train-more")

BASE = QUALITY["default"]
BASES: dict[str, dict[str, Any]] = {  # per-frame settings: label -> MaskConfig fields
    f"flow 1/{2**finest}, GrabCut 1/{scale}": {"finest_scale": None if finest else 0, "grabcut_scale": scale}
    for finest in (1, 0)
    for scale in (3, 2, 1)
}
VOTES: dict[str, dict[str, Any]] = {  # the clip's vote: label -> MaskConfig fields
    "no vote": {"clip_radius": 0},
    **{
        f"vote r{radius} >{share}": {"clip_radius": radius, "clip_vote": share}
        for radius in (2, 4, 6)
        for share in (0.4, 0.5)
    },
}
# The settings a build runs at >= 15 considered frames/s per core (benchmarks/bench_motion_build.py): flow at
# half resolution, GrabCut at 1/3 or 1/2, no vote (a vote masks about 5 frames per considered frame at stride 5).
DEFAULT_GRID = {f"{base} | no vote" for base in BASES if base.startswith("flow 1/2") and not base.endswith("1/1")}


def setting(base: str, vote: str) -> MaskConfig:
    return dataclasses.replace(BASE, **BASES[base], **VOTES[vote])


def load(root: Path, size: int) -> dict[str, tuple[list[np.ndarray], list[np.ndarray]]]:
    """Name -> (frames, ground truth) of a DAVIS-layout folder, read as ``score-motion`` reads them."""
    videos = root / "JPEGImages" / "480p" if (root / "JPEGImages" / "480p").is_dir() else root / "JPEGImages"
    masks = root / "Annotations" / "480p" if (root / "Annotations" / "480p").is_dir() else root / "Annotations"
    out = {}
    for source in list_video_tree(videos):
        if source.kind != "frames":
            continue
        frames = [f.rgb for f in iter_frames(videos, source, 0, OPEN_END, size)]
        name = sequence_name(source)
        out[name] = (frames, load_ground_truth(masks / name, frames[0].shape[:2]))
    return out


def row(t: int, found: dict[int, int], mask: np.ndarray, stats: dict, gt: np.ndarray, cfg: MaskConfig) -> dict:
    """One frame's figures as ``score-motion`` computes them (no baselines)."""
    recall, precision = recall_precision(mask, gt)
    reason = pairing_reason(list(found), cfg) or filter_reason(stats, cfg)
    return {
        "frame": t,
        "iou": iou(mask, gt),
        "recall": recall,
        "precision": precision,
        "naive_iou": None,
        "translation_iou": None,
        "gt_empty": not np.any(gt),
        "kept": reason is None,
        "stats": stats,
    }


def score_base(frames: list[np.ndarray], truth: list[np.ndarray], base: str, dis) -> dict[str, dict]:
    """Setting label -> the sequence's aggregates, for every vote over one base's per-frame masks."""
    frame_at = lambda i: frames[i] if 0 <= i < len(frames) else None  # noqa: E731
    found = {t: partners(t, frames, setting(base, "no vote")) for t in range(len(frames))}
    shared = ClipMasks(setting(base, "no vote"), frame_at, dis, keep=None)
    for t in range(len(frames)):
        shared.per_frame(t)
    out = {}
    for vote in VOTES:
        cfg = setting(base, vote)
        clip = ClipMasks(cfg, frame_at, dis, keep=None)
        for i, masks in shared.computed().items():
            clip.seed(i, masks)
        rows = []
        for t in range(len(frames)):
            if found[t]:
                result = clip.mask_at(t)
                rows.append(row(t, found[t], result.mask, result.stats, truth[t], cfg))
        figures = aggregate_rows(rows)
        out[f"{base} | {vote}"] = {
            k: figures[k] for k in ("scored", "kept", "kept_share", "j_all", "j_kept", "recall_kept", "precision_kept")
        }
    return out


def mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return float(np.mean(present)) if present else None


def summary(table: dict[str, dict], names: list[str]) -> dict[str, float | None]:
    """Means over ``names`` of J, kept share, J kept and precision kept (one without kept frames left out)."""
    rows = [table[n] for n in names]
    return {k: mean([r[k] for r in rows]) for k in ("j_all", "kept_share", "j_kept", "precision_kept", "recall_kept")}


def cross_validate(results: dict[str, dict[str, dict]], names: list[str], grid: list[str], folds: int, seed: int):
    """(per-fold choices, held-out J per sequence): each fold scored by the setting best on the others."""
    order = list(np.random.default_rng(seed).permutation(sorted(names)))
    dealt = [order[k::folds] for k in range(folds)]
    choices, held = [], {}
    for fold in dealt:
        train = [n for n in names if n not in fold]
        best = max(grid, key=lambda s: (summary(results[s], train)["j_all"], -grid.index(s)))
        choices.append((fold, best, summary(results[best], train)["j_all"], summary(results[best], fold)))
        for n in fold:
            held[n] = results[best][n]
    return choices, held


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, nargs="+", default=list(DATA), help="DAVIS-layout folders")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--only", nargs="+", default=None, help="compute these bases only (labels of BASES)")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/motion-cv.json"))
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    cv2.setNumThreads(1)
    cache: dict[str, dict[str, dict]] = json.loads(args.cache.read_text()) if args.cache.exists() else {}
    folder_of: dict[str, str] = {}
    bases = [b for b in BASES if args.only is None or b in args.only]
    for root in args.data:
        sequences = load(root, args.size)
        for name, (frames, truth) in sequences.items():
            folder_of[name] = root.name
            for base in bases:
                if all(name in cache.get(f"{base} | {v}", {}) for v in VOTES):
                    continue
                start = time.perf_counter()
                for label, figures in score_base(frames, truth, base, make_flow(setting(base, "no vote"))).items():
                    cache.setdefault(label, {})[name] = figures
                args.cache.write_text(json.dumps(cache))
                print(f"{name} {base}: {time.perf_counter() - start:.0f}s", file=sys.stderr, flush=True)
    settings = [s for s in (f"{b} | {v}" for b in BASES for v in VOTES) if s in cache]
    settings = [s for s in settings if all(n in cache[s] for n in folder_of)]
    names = [n for n in folder_of if all(cache[s][n]["scored"] for s in settings)]
    report: dict[str, Any] = {"sequences": names, "folders": {}, "grids": {}}
    folders = sorted(set(folder_of.values()))
    print(f"{len(names)} sequences ({', '.join(f'{sum(folder_of[n] == f for n in names)} in {f}' for f in folders)})")
    print(f"\n{'setting':44s} {'J':>6s} " + " ".join(f"{f[:16]:>16s}" for f in folders) + "   kept  J kept  precision")
    for s in settings:
        total = summary(cache[s], names)
        per = [summary(cache[s], [n for n in names if folder_of[n] == f])["j_all"] for f in folders]
        report["folders"][s] = {"all": total, **dict(zip(folders, per, strict=True))}
        print(
            f"{s:44s} {fmt(total['j_all']):>6s} "
            + " ".join(f"{fmt(j):>16s}" for j in per)
            + f"  {fmt(total['kept_share'])}  {fmt(total['j_kept'])}  {fmt(total['precision_kept'])}"
        )
    grids = {
        "default": [s for s in settings if s in DEFAULT_GRID],
        "per frame": [s for s in settings if s.endswith("| no vote")],
        "all": settings,
    }
    for grid_name, grid in grids.items():
        if not grid:
            continue
        choices, held = cross_validate(cache, names, grid, args.folds, args.seed)
        cv = summary(held, names)
        print(f"\ncross-validation over the '{grid_name}' grid ({len(grid)} settings, {args.folds} folds):")
        for k, (_, best, train_j, test) in enumerate(choices):
            print(f"  fold {k + 1}: chose {best} (J {train_j:.3f} on the other folds), held-out J {fmt(test['j_all'])}")
        per = {f: summary(held, [n for n in names if folder_of[n] == f])["j_all"] for f in folders}
        print(
            f"  cross-validated J {fmt(cv['j_all'])} ("
            + ", ".join(f"{f} {fmt(j)}" for f, j in per.items())
            + f"); kept {fmt(cv['kept_share'])}, precision kept {fmt(cv['precision_kept'])}"
        )
        report["grids"][grid_name] = {
            "settings": grid,
            "folds": [{"sequences": f, "chosen": b, "train_j": j, "held_out": t} for f, b, j, t in choices],
            "cv": cv,
            "cv_folders": per,
        }
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
