"""From arguments to a finished shard set: list the inputs, plan, prepare the folder, run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipelines.imageio import DEFAULT_MAX_PIXELS
from pipelines.plan import BuildPlan, chunk_bounds, order_sources, prepare_out_dir, resolve_config
from pipelines.runner import RunReport, run_plan
from pipelines.sources import inputs_hash, list_image_tree


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
    config = resolve_config(
        task, recipe_config, seed=seed, samples_per_shard=samples_per_shard, limit=limit, max_pixels=max_pixels
    )
    return BuildPlan(
        task=task,
        source_root=str(Path(images).resolve()),
        out=str(out),
        config=config,
        units=sources,
        bounds=chunk_bounds(len(sources), samples_per_shard),
        inputs=len(sources),
        inputs_hash=inputs_hash(sources),
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
    if not plan.units:
        raise ValueError(f"no input files under {images}")
    prepare_out_dir(plan, overwrite)
    return run_plan(plan, workers=workers, ray_address=ray_address, show_progress=show_progress)
