"""Motion masks against ground truth, real and synthetic, per stage: the ablation of the mask's defaults.

    .venv/bin/python benchmarks/bench_motion_masks.py --davis ../shared/data/davis-train [--seeds 100 101]
        [--only default fast ...] [--json OUT]

For each variant (the defaults, the ``fast`` quality, and the defaults with one stage changed), scored as
``mtssl-data score-motion`` scores (``pipelines.motion.score``: all frames with a partner, empty ground
truth apart, mean of sequence means):

- real: the DAVIS-layout folder given (``JPEGImages/`` + ``Annotations/``, 256-px working resolution);
  J over all frames, J over the frames Pathak's filter keeps, and the share kept;
- synthetic: the sample's synthetic videos for each seed (``pipelines.motion.synthetic``, read back from
  their mp4 files), as a regression check only;
- speed: CPU time of the mask per frame (DIS flows to every partner, camera fits, segmentation, GrabCut)
  on the synthetic frames, one thread, as frames/s per core and as a ratio to one DIS flow in the same
  run. CPU time, not wall time, so other load on the machine inflates it little.

The defaults were measured on the ten DAVIS-2016 train sequences of ``../shared/data/davis-train``;
its sequences are not in any test or benchmark of the published numbers the issue cites.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

import cv2

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelines.motion.camera import make_flow, to_gray
from pipelines.motion.clips import read_video
from pipelines.motion.config import QUALITY, MaskConfig
from pipelines.motion.evaluate import score_tree  # noqa: E402
from pipelines.motion.masks import motion_mask_at  # noqa: E402
from pipelines.motion.synthetic import write_synthetic_videos  # noqa: E402

DEFAULT = MaskConfig()
VARIANTS: dict[str, MaskConfig] = {
    "default": DEFAULT,
    "fast (one forward pair, gap 3, no GrabCut)": QUALITY["fast"],
    "forward partners only": replace(DEFAULT, bidirectional=False),
    "gaps (1,)": replace(DEFAULT, gaps=(1,)),
    "gaps (1, 3)": replace(DEFAULT, gaps=(1, 3)),
    "gaps (2,)": replace(DEFAULT, gaps=(2,)),
    "combine directional": replace(DEFAULT, combine="directional"),
    "no GrabCut": replace(DEFAULT, grabcut=False),
    "GrabCut at 1/2 resolution": replace(DEFAULT, grabcut_scale=2),
    "min_speed 0.8": replace(DEFAULT, min_speed=0.8),
    "min_speed 0.4": replace(DEFAULT, min_speed=0.4),
    "DIS preset fast": replace(DEFAULT, preset="fast"),
    "DIS refinement 5 iterations (the preset's)": replace(DEFAULT, refine_iters=None),
    "DIS refinement 0 iterations": replace(DEFAULT, refine_iters=0),
    "forward-backward check": replace(DEFAULT, fb_check=True),
    "Pathak's min_fg 0.10": replace(DEFAULT, min_fg=0.10),
}


def real_scores(davis: Path, cfg: MaskConfig) -> dict:
    o = score_tree(davis / "JPEGImages", davis / "Annotations", cfg)["overall"]
    keys = ("j_all", "j_kept", "kept_share_frames", "recall_kept", "precision_kept", "naive_j_all", "translation_j_all")
    return {k: o[k] for k in keys}


def synthetic_scores(roots: list[Path], cfg: MaskConfig) -> dict:
    scores = [score_tree(r / "videos", r / "masks", cfg)["overall"] for r in roots]
    return {k: sum(s[k] for s in scores) / len(scores) for k in ("j_all", "j_kept", "kept_share_frames")}


def speed(frames: list[list], cfg: MaskConfig) -> dict:
    """Frames/s per core of the mask (flows included) and of one DIS flow, CPU time, one thread."""
    dis, mask_s, flow_s, n = make_flow(cfg), 0.0, 0.0, 0
    for video in frames:
        for t in range(cfg.max_gap, len(video) - cfg.max_gap, 3):
            partners = {d: video[t + d] for d in cfg.offsets()}
            start = time.process_time()
            motion_mask_at(video[t], partners, cfg, dis)
            mask_s += time.process_time() - start
            g0, g1 = to_gray(video[t]), to_gray(video[t + 1])
            start = time.process_time()
            dis.calc(g0, g1, None)
            flow_s += time.process_time() - start
            n += 1
    return {"mask_per_s": n / mask_s, "flow_per_s": n / flow_s, "ratio_to_one_flow": flow_s / mask_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--davis", type=Path, required=True, help="a DAVIS-layout folder with ground truth")
    parser.add_argument("--seeds", type=int, nargs="+", default=[100, 101])
    parser.add_argument("--only", nargs="+", default=None, help="variant names (default: all)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    cv2.setNumThreads(1)
    names = args.only or list(VARIANTS)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        roots = []
        for seed in args.seeds:
            write_synthetic_videos(Path(tmp) / str(seed), seed=seed)
            roots.append(Path(tmp) / str(seed))
        videos = [read_video(p) for p in sorted((roots[0] / "videos").glob("*.mp4"))]
        print(
            "| variant | DAVIS J | J kept | kept | recall kept | precision kept | synthetic J "
            "| frames/s per core | x one flow |"
        )
        print("|---|---|---|---|---|---|---|---|---|")
        for name in names:
            cfg = VARIANTS[name]
            row = {
                "real": real_scores(args.davis, cfg),
                "synthetic": synthetic_scores(roots, cfg),
                "speed": speed(videos, cfg),
            }
            results[name] = {**row, "config": asdict(cfg)}
            r, s, v = row["real"], row["synthetic"], row["speed"]
            print(
                f"| {name} | {r['j_all']:.3f} | {r['j_kept']:.3f} | {r['kept_share_frames']:.0%} "
                f"| {r['recall_kept']:.2f} | {r['precision_kept']:.2f} | {s['j_all']:.3f} "
                f"| {v['mask_per_s']:.1f} | {v['ratio_to_one_flow']:.2f}x |",
                flush=True,
            )
    base = results.get("default", {}).get("real")
    if base:
        print(
            f"baselines on the real set: flow magnitude J {base['naive_j_all']:.3f}, "
            f"flow minus its median {base['translation_j_all']:.3f}"
        )
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
