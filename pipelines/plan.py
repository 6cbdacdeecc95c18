"""A build's plan: resolved config, the ordered input list and its deterministic split into shards.

The order is a seeded permutation of the sorted input list (so shards mix classes), cut into
contiguous runs of ``samples_per_shard`` inputs; shard ``i`` is therefore a pure function of the
inputs, the seed and the shard size, whichever machine or worker builds it. ``plan.json`` records
what a rerun must agree with to resume.
"""

from __future__ import annotations

import io
import json
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from mtssl.contract import MANIFEST_FILE, PARTS_DIR, PLAN_FILE, SCHEMA_VERSION, config_hash, remove_stale_tmp
from mtssl.contract import locations as loc


class PlanMismatch(RuntimeError):
    """The output folder holds (part of) a build with another config or other inputs."""


@dataclass
class BuildPlan:
    """What to build: the work units (image paths, or video segments) and how they split into shards."""

    task: str
    source_root: str
    out: str
    config: dict[str, Any]
    units: list[Any] = field(repr=False)
    bounds: list[tuple[int, int]] = field(repr=False)  # shard i holds units[bounds[i][0]:bounds[i][1]]
    inputs: int = 0  # source files and folders the units come from (each image is one unit)
    inputs_hash: str = ""
    unit_name: str = "img"
    input_stats: list[tuple[int, int]] | None = field(default=None, repr=False)  # (size, mtime_ns) per unit
    input_digests: list[str] | None = field(default=None, repr=False)  # content digest per unit (--rehash)

    @property
    def config_hash(self) -> str:
        return config_hash(self.config)

    @property
    def num_shards(self) -> int:
        return len(self.bounds)

    def shard_units(self, index: int) -> list[Any]:
        start, stop = self.bounds[index]
        return self.units[start:stop]

    def record(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "schema_version": SCHEMA_VERSION,
            "config": self.config,
            "config_hash": self.config_hash,
            "inputs": self.inputs,
            "inputs_hash": self.inputs_hash,
            "num_shards": self.num_shards,
            **({"rehash": True} if self.input_digests is not None else {}),
        }


def chunk_bounds(count: int, size: int) -> list[tuple[int, int]]:
    """Consecutive runs of ``size`` units (the last one shorter)."""
    return [(start, min(count, start + size)) for start in range(0, count, size)]


def pack_bounds(weights: list[int], capacity: int) -> list[tuple[int, int]]:
    """Consecutive runs whose summed weight stays within ``capacity`` (a heavier unit gets a run alone)."""
    bounds, start, load = [], 0, 0
    for i, weight in enumerate(weights):
        if i > start and load + weight > capacity:
            bounds.append((start, i))
            start, load = i, 0
        load += weight
    if start < len(weights):
        bounds.append((start, len(weights)))
    return bounds


def resolve_config(
    task: str, recipe_config: Any, *, seed: int, samples_per_shard: int, limit: int | None, **extra: Any
) -> dict[str, Any]:
    """Everything that determines the bytes of the shards, as plain JSON."""
    return {
        "task": task,
        "schema_version": SCHEMA_VERSION,
        "recipe": json.loads(json.dumps(asdict(recipe_config))),
        "seed": seed,
        "samples_per_shard": samples_per_shard,
        "limit": limit,
        **extra,
    }


def order_sources(relpaths: list[str], seed: int, limit: int | None) -> list[str]:
    """Seeded permutation of the sorted list; ``limit`` keeps its first N (a random subset)."""
    ordered = sorted(relpaths)
    perm = np.random.default_rng(np.random.SeedSequence([seed, 0x5EED])).permutation(len(ordered))
    chosen = [ordered[i] for i in perm]
    return chosen if limit is None else chosen[:limit]


def prepare_out_dir(plan: BuildPlan, overwrite: bool) -> None:
    """Create the output folder, or check that what it holds is an earlier run of this same plan.
    ``plan.out`` is a folder or a URL (``mtssl.contract.locations``; ``build`` checks it takes writes, and
    holds its lock while this runs and until the manifest is written: one writer per folder)."""
    out = plan.out
    if overwrite:
        for name in loc.listing(out):
            if (name.startswith(f"{plan.task}-") and name.endswith(".tar")) or name in (MANIFEST_FILE, PLAN_FILE):
                loc.remove(loc.join(out, name))
        loc.remove(loc.join(out, PARTS_DIR))
    if not loc.is_url(out):
        (loc.local(out) / PARTS_DIR).mkdir(parents=True, exist_ok=True)
        remove_stale_tmp(loc.local(out))
        remove_stale_tmp(loc.local(out) / PARTS_DIR)
    record = plan.record()
    files = loc.listing(out)
    if PLAN_FILE in files:
        previous = json.loads(loc.read_bytes(loc.join(out, PLAN_FILE)))
        check_same_plan(out, previous, record, plan)
    elif any(name.endswith(".tar") for name in files):
        raise PlanMismatch(f"{out} already holds shards without a plan; use another --out or --overwrite")
    loc.write_json(loc.join(out, PLAN_FILE), record)
    if plan.input_stats is not None:
        write_input_list(out, plan)


def check_same_plan(out: str, previous: dict[str, Any], record: dict[str, Any], plan: BuildPlan) -> None:
    """PlanMismatch, saying what differs and what to do, unless ``previous`` is the record of this plan."""
    for key, what in (("config_hash", "configuration"), ("task", "task")):
        if previous.get(key) != record[key]:
            raise PlanMismatch(
                f"{out} holds a {previous.get('task')} build with another {what} "
                f"({previous.get(key)} != {record[key]}); use another --out, or --overwrite to replace it"
            )
    if previous.get("rehash", False) != record.get("rehash", False):
        given = "with" if previous.get("rehash") else "without"
        raise PlanMismatch(
            f"the build in {out} was started {given} --rehash: rerun it the same way to resume it, "
            "or --overwrite to rebuild"
        )
    if previous.get("inputs_hash") != record["inputs_hash"]:
        raise PlanMismatch(
            f"the inputs changed since the build in {out} started ({input_changes(out, plan)}); its shards "
            "no longer match them: --overwrite rebuilds from the inputs as they are now, or restore them"
        )


INPUTS_FILE = "inputs.parquet"  # in PARTS_DIR: each input's path, size and mtime when the build started


def write_input_list(out: str, plan: BuildPlan) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    sizes, mtimes = zip(*plan.input_stats, strict=True) if plan.input_stats else ((), ())
    names = [input_name(u) for u in plan.units]
    columns = {"source": names, "size": list(sizes), "mtime_ns": list(mtimes)}
    if plan.input_digests is not None:
        columns["sha256"] = plan.input_digests
    with loc.staged(loc.join(out, PARTS_DIR, INPUTS_FILE)) as tmp:
        pq.write_table(pa.table(columns), tmp)


def input_name(unit: Any) -> str:
    """The input a work unit comes from, as the input list records it: an image's path, a segment's video
    (its segments share one row's figures), non-UTF-8 bytes escaped."""
    source = unit if isinstance(unit, str) else unit["source"]
    return source.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def input_changes(out: str, plan: BuildPlan) -> str:
    """What differs between the input list recorded when the build in ``out`` started and ``plan``'s."""
    import pyarrow.parquet as pq

    from pipelines.sources import describe_changes

    recorded = loc.join(out, PARTS_DIR, INPUTS_FILE)
    if plan.input_stats is None or not loc.is_file(recorded):
        return "the input list or its fingerprint differs; a build by an mtssl before 2026-12 fingerprinted names only"
    rows = pq.read_table(io.BytesIO(loc.read_bytes(recorded))).to_pylist()
    before = {r["source"]: (r["size"], r["mtime_ns"], r.get("sha256", "")) for r in rows}
    digests = plan.input_digests or [""] * len(plan.units)
    now = {input_name(u): (*s, d) for u, s, d in zip(plan.units, plan.input_stats, digests, strict=True)}
    return describe_changes(before, now)
