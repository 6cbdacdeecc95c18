"""From arguments to a finished shard set: list the inputs, plan, prepare the folder, run."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from pipelines.errors import Reject
from pipelines.imageio import DEFAULT_MAX_PIXELS
from pipelines.plan import BuildPlan, chunk_bounds, order_sources, pack_bounds, prepare_out_dir, resolve_config
from pipelines.progress import make_progress
from pipelines.recipes.motion import MotionConfig
from pipelines.runner import RunReport, run_plan
from pipelines.sources import file_stats, inputs_hash, list_image_tree
from pipelines.videos import OPEN_END, VideoSource, list_video_tree, probe, segments


def plan_image_build(
    task: str,
    images: Path,
    out: Path,
    recipe_config: Any,
    *,
    seed: int = 0,
    samples_per_shard: int = 1000,
    limit: int | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> BuildPlan:
    sources = order_sources([s.relpath for s in list_image_tree(images)], seed, limit)
    stats = file_stats(images, sources)
    config = resolve_config(
        task,
        recipe_config,
        seed=seed,
        samples_per_shard=samples_per_shard,
        limit=limit,
        max_pixels=max_pixels,
        source_kind="images",
    )
    return BuildPlan(
        task=task,
        source_root=str(Path(images).resolve()),
        out=str(out),
        config=config,
        units=sources,
        bounds=chunk_bounds(len(sources), samples_per_shard),
        inputs=len(sources),
        inputs_hash=inputs_hash(sources, stats),
        input_stats=stats,
    )


def build_images(
    task: str,
    images: Path,
    out: Path,
    recipe_config: Any,
    *,
    workers: int = 2,
    ray_address: str | None = None,
    overwrite: bool = False,
    show_progress: bool = True,
    **plan_options: Any,
) -> RunReport:
    """Build (or resume) the ``task`` shard set of an image tree."""
    plan = plan_image_build(task, images, out, recipe_config, **plan_options)
    return execute(plan, images, workers, ray_address, overwrite, show_progress)


def plan_video_build(
    videos: Path,
    out: Path,
    cfg: MotionConfig,
    *,
    seed: int = 0,
    samples_per_shard: int = 1000,
    limit: int | None = None,
    show_progress: bool = True,
) -> BuildPlan:
    """Probe every video (no frame decoding), split long ones into segments, pack segments into shards."""
    listed = {s.relpath: s for s in list_video_tree(videos)}
    order = order_sources(list(listed), seed, limit)
    units: list[dict[str, Any]] = []
    with make_progress(disable=not show_progress) as progress:
        for relpath in progress.track(order, description="probe videos"):
            units.extend(video_units(Path(videos), listed[relpath], cfg))
    config = resolve_config(
        "motion", cfg, seed=seed, samples_per_shard=samples_per_shard, limit=limit, source_kind="videos"
    )
    weights = [expected_samples(u, cfg, samples_per_shard) for u in units]
    return BuildPlan(
        task="motion",
        source_root=str(Path(videos).resolve()),
        out=str(out),
        config=config,
        units=units,
        bounds=pack_bounds(weights, samples_per_shard),
        inputs=len(order),
        inputs_hash=inputs_hash([json.dumps(u, sort_keys=True) for u in units]),
        unit_name="segment",
    )


def video_units(root: Path, source: VideoSource, cfg: MotionConfig) -> list[dict[str, Any]]:
    """The segments of one video; one open segment when it cannot be probed (its task will reject it)."""
    try:
        spans = segments(probe(root, source), cfg.frame_limit, cfg.segment_frames)
    except Reject:
        spans = [(0, cfg.frame_limit or OPEN_END)]
    unit = {"source": source.relpath, "kind": source.kind, "frames": list(source.frames)}
    return [{**unit, "start": start, "stop": stop} for start, stop in spans]


def expected_samples(unit: dict[str, Any], cfg: MotionConfig, open_weight: int) -> int:
    """How many frames a segment considers (an open-ended one counts as a full shard)."""
    if unit["stop"] >= OPEN_END:
        return open_weight
    return max(1, math.ceil((unit["stop"] - unit["start"]) / cfg.stride))


def build_videos(
    videos: Path,
    out: Path,
    cfg: MotionConfig,
    *,
    workers: int = 2,
    ray_address: str | None = None,
    overwrite: bool = False,
    show_progress: bool = True,
    **plan_options: Any,
) -> RunReport:
    """Build (or resume) the motion shard set of a video tree."""
    plan = plan_video_build(videos, out, cfg, show_progress=show_progress, **plan_options)
    return execute(plan, videos, workers, ray_address, overwrite, show_progress)


def execute(
    plan: BuildPlan, source: Path, workers: int, ray_address: str | None, overwrite: bool, show_progress: bool
) -> RunReport:
    """Check the plan has work, prepare (or check, to resume) its output folder, and run it."""
    if not plan.units:
        raise ValueError(f"no input files under {source}")
    prepare_out_dir(plan, overwrite)
    return run_plan(plan, workers=workers, ray_address=ray_address, show_progress=show_progress)
