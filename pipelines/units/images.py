"""Image work units: one image file each, listed from an ImageNet-layout tree.

The order is a seeded permutation of the sorted file list (``pipelines.plan.order_sources``), cut into
runs of ``samples_per_shard`` images. Each image ends as one sample or one reject row, never an exception.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from mtssl.contract import encode_json, sample_key
from pipelines.errors import InputVanished, Reject
from pipelines.imageio import DEFAULT_MAX_PIXELS, load_rgb
from pipelines.plan import chunk_bounds, order_sources
from pipelines.recipes.base import Recipe, RecipeOutput, parsed_config
from pipelines.shard_result import ShardResult, internal_error, label_of
from pipelines.sources import content_digest, display_name, file_stats, inputs_hash, list_image_tree, name_problem
from pipelines.units.base import PlanRequest, Units


def plan(recipe: Recipe, request: PlanRequest, max_pixels: int = DEFAULT_MAX_PIXELS) -> Units:
    """Every file of the tree (each one an input, whatever it holds), in the seeded order."""
    sources = order_sources([s.relpath for s in list_image_tree(request.root)], request.seed, request.limit)
    stats = file_stats(request.root, sources)
    digests = [content_digest(request.root, [s]) for s in sources] if request.rehash else None
    return Units(
        units=sources,
        bounds=chunk_bounds(len(sources), request.samples_per_shard),
        inputs=len(sources),
        inputs_hash=inputs_hash(sources, stats, digests),
        unit_name="img",
        config_extra={"max_pixels": max_pixels, "source_kind": "images"},
        input_stats=stats,
        input_digests=digests,
    )


def sample_rng(seed: int, task: str, source: str) -> np.random.Generator:
    """Per-sample randomness from (seed, task, source): independent of the shard split and worker."""
    words = [int.from_bytes(hashlib.sha256(f"{task}\0{source}".encode()).digest()[:8], "little"), seed]
    return np.random.default_rng(np.random.SeedSequence(words))


def make_one(recipe: Recipe, config: dict[str, Any], root: Path, source: str) -> tuple[RecipeOutput, Any]:
    """Load one image (at reduced DCT scale where the recipe allows) and run the recipe on it."""
    cfg = parsed_config(recipe, config["recipe"])
    image = load_rgb(
        root / source,
        max_pixels=config["max_pixels"],
        min_side=cfg.min_source_side,
        draft_side=recipe.draft_side(cfg),
    )
    output = recipe.make_sample(image.rgb, sample_rng(config["seed"], recipe.name, source), cfg)
    return output, image


def process(recipe: Recipe, config: dict[str, Any], root: Path, shard: int, units: list[str]) -> ShardResult:
    """Run the recipe on every image of the shard."""
    result = ShardResult()
    for source in units:
        problem = name_problem(source)
        if problem is not None:
            result.reject(display_name(source), shard, *problem)
            continue
        try:
            output, image = make_one(recipe, config, root, source)
        except Reject as exc:
            result.reject(source, shard, exc.reason, exc.detail)
            continue
        except InputVanished:
            raise  # the build stops: the set would lack an input its fingerprint claims
        except Exception as exc:  # a recipe bug must not stop the build: record it with its trace
            result.reject(source, shard, "internal error", internal_error(exc))
            continue
        output.fields["json"] = encode_json({**output.params, "source": source})
        row = {
            "shard": shard,
            "source": source,
            "label": label_of(source),
            "source_mode": image.source_mode,
            "width": image.source_size[0],
            "height": image.source_size[1],
        }
        result.add(sample_key(source), output, row)
    return result
