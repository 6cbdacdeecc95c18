"""Motion masks on the synthetic videos: mask quality against exact ground truth, and speed on one core.

    .venv/bin/python benchmarks/bench_motion_masks.py [--seeds 100 101 102] [--preset medium] [--gap 3]
        [--fb-check] [--repeat 5] [--json results.json]

Quality: the synthetic set (``pipelines.motion.synthetic``) is written for each seed into a temporary
folder, every frame is read back from its mp4 with PyAV (so codec noise is in), and each frame is scored
as ``pipelines.motion.score`` defines it (pair t with t + gap, else t - gap; IoU with the exact mask; two
empty masks score 1). Three masks per pair, from one flow: the method; the naive baseline (flow magnitude,
no camera compensation, same threshold scheme and clean-up); and the naive baseline with a fixed
threshold (``min_residual`` px, no adaptive level), in case the adaptive level is what hurts it. The
headline is the mean J over the sequences with camera motion (DAVIS-style mean of sequence means), over
all scored frames and over the frames the filter keeps, with the targets of issue 3: method >= 0.80 and
>= 0.30 above the naive baseline. The MaskConfig defaults were tuned on seeds 0-2; the default seeds
here (100-102) were not looked at while tuning.

Speed, one core (``cv2.setNumThreads(1)``), at the synthetic frames' size (336x256, the 256-px working
resolution): DIS flow alone vs ``motion_mask`` (flow, camera fit, mask) per pair, and a per-worker
approximation of the pipeline: decode (PyAV) + flow vs decode + mask + encode (rgb.jpg, l.jpg, mask.png),
with every frame a sample and with every 5th (the build's default stride; every frame is still decoded).
Times are the process's CPU time (one thread does all the work), so other load on the machine inflates
them little; runs are interleaved and the median of ``--repeat`` is reported.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mtssl.contract import encode_jpeg, encode_png  # noqa: E402
from pipelines.lab import rgb_to_lab8  # noqa: E402
from pipelines.motion.masks import (  # noqa: E402
    MaskConfig,
    make_flow,
    motion_mask,
    to_gray,
)
from pipelines.motion.score import score_sequence  # noqa: E402
from pipelines.motion.synthetic import SyntheticSequence, read_masks, read_video, write_synthetic_videos  # noqa: E402

METHODS = ("method", "naive", "naive_fixed")
TARGET_J, TARGET_MARGIN, TARGET_SPEED = 0.80, 0.30, 0.6
STRIDES = (1, 5)  # every frame a sample (worst case), and `mtssl-data build motion`'s default stride


def score_pairs(frames: list[np.ndarray], truth: list[np.ndarray], cfg: MaskConfig, dis) -> list[dict[str, Any]]:
    """One row per scored frame (``pipelines.motion.score``, as score-motion computes it): IoU of the
    method and of the two naive baselines, and the filter's verdict on the method's mask."""
    rows = score_sequence(frames, truth, cfg, dis)["frames"]
    keys = {"method": "iou", "naive": "naive_iou", "naive_fixed": "naive_fixed_iou"}
    return [{**{name: r[key] for name, key in keys.items()}, "frame": r["frame"], "kept": r["kept"]} for r in rows]


def sequence_means(rows: list[dict[str, Any]]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for subset, pick in (("all", rows), ("kept", [r for r in rows if r["kept"]])):
        for name in METHODS:
            out[f"{name}_{subset}"] = float(np.mean([r[name] for r in pick])) if pick else None
    out["scored"], out["kept"] = len(rows), sum(r["kept"] for r in rows)
    return out


def mean_of(sequences: list[dict[str, Any]], key: str) -> float | None:
    values = [s[key] for s in sequences if s[key] is not None]
    return float(np.mean(values)) if values else None


Decoded = list[tuple[SyntheticSequence, list[np.ndarray]]]


def run_quality(seeds: list[int], cfg: MaskConfig, work: Path) -> tuple[list[dict[str, Any]], Decoded]:
    """Score every sequence of every seed; also return the first seed's sequences and frames (for speed)."""
    dis = make_flow(cfg)
    results, decoded = [], []
    for seed in seeds:
        for seq in write_synthetic_videos(work / f"seed{seed}", seed=seed):
            frames, truth = read_video(seq.video), read_masks(seq.masks)
            if seed == seeds[0]:
                decoded.append((seq, frames))
            means = sequence_means(score_pairs(frames, truth, cfg, dis))
            results.append(
                {
                    "sequence": seq.name,
                    "seed": seed,
                    "camera_motion": seq.camera_motion,
                    "objects": seq.max_objects,
                    **means,
                }
            )
    return results, decoded


def fmt(value: float | None) -> str:
    return "    -" if value is None else f"{value:.3f}"


def print_quality(results: list[dict[str, Any]], seeds: list[int]) -> dict[str, Any]:
    print(f"\nMask quality: mean IoU (J) per sequence, mean over seeds {seeds}")
    print(
        f"{'sequence':22s} {'camera':>6s} {'J all':>6s} {'naive':>6s} {'fixed':>6s} {'J kept':>6s} {'naive':>6s}"
        f" {'kept/scored':>11s}"
    )
    names = list(dict.fromkeys(r["sequence"] for r in results))
    for name in names:
        rows = [r for r in results if r["sequence"] == name]
        cells = [
            fmt(mean_of(rows, k)) for k in ("method_all", "naive_all", "naive_fixed_all", "method_kept", "naive_kept")
        ]
        kept, scored = sum(r["kept"] for r in rows), sum(r["scored"] for r in rows)
        print(f"{name:22s} {'yes' if rows[0]['camera_motion'] else 'no':>6s} {' '.join(cells)} {kept:>5d}/{scored:<5d}")
    summary: dict[str, Any] = {}
    groups = {
        "camera motion": [r for r in results if r["camera_motion"]],
        "camera motion, with objects": [r for r in results if r["camera_motion"] and r["objects"]],
        "static camera": [r for r in results if not r["camera_motion"]],
    }
    print(f"\n{'set (mean of sequence means)':44s} {'method':>7s} {'naive':>7s} {'fixed':>7s} {'margin':>7s}")
    for group, rows in groups.items():
        for subset in ("all", "kept"):
            method, naive, fixed = (mean_of(rows, f"{m}_{subset}") for m in METHODS)
            margin = None if method is None or naive is None else method - max(naive, fixed or 0.0)
            summary[f"{group} / {subset}"] = {
                "method": method,
                "naive": naive,
                "naive_fixed": fixed,
                "margin": margin,
                "sequences": len(rows),
            }
            print(
                f"{group + ' / ' + subset + ' frames':44s} {fmt(method):>7s} {fmt(naive):>7s} {fmt(fixed):>7s}"
                f" {fmt(margin):>7s}"
            )
    head = summary["camera motion / all"]
    ok = head["method"] >= TARGET_J and head["margin"] >= TARGET_MARGIN
    print(
        f"target (camera motion, all frames): method >= {TARGET_J:.2f} and >= best naive + {TARGET_MARGIN:.2f}:"
        f" {'MET' if ok else 'NOT MET'} ({head['method']:.3f}, margin {head['margin']:+.3f})"
    )
    return summary


def _median_interleaved(funcs: dict[str, Any], repeat: int) -> dict[str, float]:
    times: dict[str, list[float]] = {name: [] for name in funcs}
    for _ in range(repeat):
        for name, fn in funcs.items():
            start = time.process_time()  # CPU time of this process: robust to other load on the machine
            count = fn()
            times[name].append((time.process_time() - start) / count)
    return {name: statistics.median(values) for name, values in times.items()}


def run_speed(sequences: Decoded, cfg: MaskConfig, repeat: int) -> dict[str, Any]:
    """Per-pair and per-frame CPU seconds on one core; see the module doc."""
    cv2.setNumThreads(1)
    dis = make_flow(cfg)
    pairs = [(f[t], f[t + cfg.gap]) for _, f in sequences for t in range(0, len(f) - cfg.gap, 2)]

    def flow_only() -> int:
        for a, b in pairs:
            dis.calc(to_gray(a), to_gray(b), None)
        return len(pairs)

    def mask_only() -> int:
        for a, b in pairs:
            motion_mask(a, b, cfg, dis)
        return len(pairs)

    def pipeline(with_mask: bool, stride: int) -> int:
        """Decode every frame; every ``stride``-th frame is a sample (flow only, or mask + encoded fields)."""
        count = 0
        for seq, _ in sequences:
            frames = read_video(seq.video)
            for t in range(0, len(frames) - cfg.gap, stride):
                if with_mask:
                    result = motion_mask(frames[t], frames[t + cfg.gap], cfg, dis)
                    encode_jpeg(frames[t], 95), encode_jpeg(rgb_to_lab8(frames[t])[..., 0], 95)
                    encode_png(result.mask)
                else:
                    dis.calc(to_gray(frames[t]), to_gray(frames[t + cfg.gap]), None)
                count += 1
        return count

    runs: dict[str, Any] = {"flow": flow_only, "mask": mask_only}
    for stride in STRIDES:
        runs[f"decode_flow_s{stride}"] = lambda stride=stride: pipeline(False, stride)
        runs[f"end_to_end_s{stride}"] = lambda stride=stride: pipeline(True, stride)
    sec = _median_interleaved(runs, repeat)
    height, width = pairs[0][0].shape[:2]
    out = {
        "size": f"{width}x{height}",
        "pairs": len(pairs),
        "seconds": sec,
        "fps": {k: 1 / v for k, v in sec.items()},
        "mask_vs_flow": sec["flow"] / sec["mask"],
        "end_to_end_vs_decode_flow": {s: sec[f"decode_flow_s{s}"] / sec[f"end_to_end_s{s}"] for s in STRIDES},
        "loadavg": os.getloadavg()[0],
    }
    print(
        f"\nSpeed on one core (CPU time) at {out['size']} (preset {cfg.preset}, gap {cfg.gap}, fb_check {cfg.fb_check};"
        f" median of {repeat}; load average {out['loadavg']:.1f} on {os.cpu_count()} CPUs)"
    )
    print(f"  DIS flow alone          {out['fps']['flow']:7.1f} pairs/s  ({1000 * sec['flow']:.2f} ms)")
    print(
        f"  motion_mask             {out['fps']['mask']:7.1f} pairs/s  ({1000 * sec['mask']:.2f} ms)"
        f"  ratio to flow {out['mask_vs_flow']:.2f}"
    )
    for stride in STRIDES:
        print(
            f"  stride {stride}: decode + flow {out['fps'][f'decode_flow_s{stride}']:6.1f} samples/s,"
            f" decode + mask + encode {out['fps'][f'end_to_end_s{stride}']:6.1f} samples/s,"
            f" ratio {out['end_to_end_vs_decode_flow'][stride]:.2f} (target >= {TARGET_SPEED})"
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[100, 101, 102])
    parser.add_argument("--preset", default=MaskConfig.preset)
    parser.add_argument("--gap", type=int, default=MaskConfig.gap)
    parser.add_argument("--fb-check", action="store_true")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--no-speed", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    cv2.setNumThreads(1)
    cfg = replace(MaskConfig(), preset=args.preset, gap=args.gap, fb_check=args.fb_check)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mtssl-motion-bench-") as tmp:
        results, decoded = run_quality(args.seeds, cfg, Path(tmp))
        summary = print_quality(results, args.seeds)
        speed = None if args.no_speed else run_speed(decoded, cfg, args.repeat)
    print(f"\n({time.perf_counter() - start:.0f} s)")
    if args.json:
        report = {"config": asdict(cfg), "seeds": args.seeds, "sequences": results, "summary": summary, "speed": speed}
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
