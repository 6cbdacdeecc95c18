"""From arguments to a finished shard set: plan the work units, prepare the folder, run.

One path for every task: the recipe's ``source`` (``pipelines.units``) lists and splits its inputs, and
``pipelines.runner`` builds the shards.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mtssl.contract import hold
from mtssl.contract import locations as loc
from pipelines.plan import BuildPlan, prepare_out_dir, resolve_config
from pipelines.recipes import RECIPES
from pipelines.runner import RunReport, run_plan
from pipelines.units import KINDS
from pipelines.units.base import PlanRequest


def plan_build(
    task: str,
    source: Path,
    out: str | Path,
    recipe_config: Any,
    *,
    seed: int = 0,
    samples_per_shard: int = 1000,
    limit: int | None = None,
    show_progress: bool = True,
    rehash: bool = False,
    **unit_options: Any,
) -> BuildPlan:
    """The plan of ``task`` over the image or video tree ``source``: its units, their split into shards,
    and the resolved config. ``unit_options`` go to the units' planner (images: ``max_pixels``)."""
    recipe = RECIPES[task]
    request = PlanRequest(Path(source), recipe_config, seed, samples_per_shard, limit, show_progress, rehash)
    units = KINDS[recipe.source].plan(recipe, request, **unit_options)
    config = resolve_config(
        task, recipe_config, seed=seed, samples_per_shard=samples_per_shard, limit=limit, **units.config_extra
    )
    return BuildPlan(
        task=task,
        source_root=str(Path(source).resolve()),
        out=str(out),
        config=config,
        units=units.units,
        bounds=units.bounds,
        inputs=units.inputs,
        inputs_hash=units.inputs_hash,
        unit_name=units.unit_name,
        input_stats=units.input_stats,
        input_digests=units.input_digests,
    )


def build(
    task: str,
    source: Path,
    out: str | Path,
    recipe_config: Any,
    *,
    workers: int = 2,
    ray_address: str | None = None,
    overwrite: bool = False,
    show_progress: bool = True,
    **plan_options: Any,
) -> RunReport:
    """Build (or resume) the ``task`` shard set of an image or video tree into a folder or a bucket URL
    (``out``; checked for writes first, so a bad URL or refused credentials fail before any work).

    The build holds ``out``'s lock (``mtssl.contract.locks``) from before it plans until its manifest is
    written, so a second build into ``out`` refuses (LockHeld) before it touches the plan or any shard."""
    try:
        loc.check_writable(out)
    except loc.LocationError as exc:
        raise ValueError(str(exc)) from None
    with hold(out, what=f"{task} build"):
        plan = plan_build(task, source, out, recipe_config, show_progress=show_progress, **plan_options)
        if not plan.units:
            raise ValueError(f"no input files under {source}")
        prepare_out_dir(plan, overwrite)
        return run_plan(plan, workers=workers, ray_address=ray_address, show_progress=show_progress)
