"""Assembling a finished build: ``manifest.json`` (written last), the Parquet index and reject list.

The manifest holds everything needed to trust and reuse the set: task, schema version, resolved
config and its hash, package versions, source and input count, the shard list in the shape that
``wids`` reads (``url``, ``nsamples``, ``filesize``, ``md5sum``), totals, rejects by reason and the
task's summaries (the colour set's ab prior) and the recipe parameters the trainer may rely on
(``declared``). It holds no timestamps, so identical builds give identical manifests.
"""

from __future__ import annotations

import io
import json
from collections import Counter
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mtssl.contract import INDEX_FILE, MANIFEST_FILE, PARTS_DIR, REJECTS_FILE, Manifest, shard_name, stats_name
from mtssl.contract import locations as loc
from mtssl.contract.manifest import declaration
from pipelines.plan import BuildPlan
from pipelines.recipes import RECIPES
from pipelines.shard_result import INDEX_SCHEMA, REJECT_SCHEMA, unit_source
from pipelines.shardjob import summarize_counts

VERSIONED_PACKAGES = ("mtssl", "numpy", "opencv-python-headless", "pillow", "webdataset", "pyarrow", "ray", "av")


def package_versions() -> dict[str, str]:
    versions = {}
    for name in VERSIONED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def done_shards(out: str, task: str, num_shards: int) -> dict[int, dict[str, Any]]:
    """The stats of the finished shards of a build in ``out`` (a folder or a URL), by shard index.

    A shard is done when its stats exist and its tar has the size they record; a tar missing, truncated
    or replaced is not, and a rerun rebuilds it. Two listings, then one read per finished shard's stats.
    """
    tars, parts = loc.listing(out), loc.listing(loc.join(out, PARTS_DIR))
    done = {}
    for index in range(num_shards):
        name = stats_name(task, index)
        if name not in parts or shard_name(task, index) not in tars:
            continue
        stats = json.loads(loc.read_bytes(loc.join(out, PARTS_DIR, name)))
        if tars[shard_name(task, index)] == stats.get("filesize"):
            done[index] = stats
    return done


def concat_parts(out: str, names: list[str], suffix: str, schema: pa.Schema, target: str) -> pa.Table:
    parts = [loc.read_bytes(loc.join(out, PARTS_DIR, f"{name}.{suffix}.parquet")) for name in names]
    tables = [pq.read_table(io.BytesIO(data), schema=schema) for data in parts]
    table = pa.concat_tables(tables) if tables else schema.empty_table()
    with loc.staged(target) as tmp:
        pq.write_table(table, tmp)
    return table


def check_accounting(plan: BuildPlan, index: pa.Table, rejects: pa.Table) -> None:
    """Every input ends in a shard or in the reject list; an image ends in exactly one of them."""
    expected = {unit_source(u) for u in plan.units}
    seen = set(index.column("source").to_pylist()) | set(rejects.column("source").to_pylist())
    if seen != expected:
        lost = sorted(expected - seen)[:5]
        raise RuntimeError(f"accounting error: inputs neither written nor rejected: {lost}")
    if plan.config.get("source_kind", "images") == "images" and index.num_rows + rejects.num_rows != plan.inputs:
        raise RuntimeError(f"accounting error: {index.num_rows} + {rejects.num_rows} rows for {plan.inputs} inputs")


def declared_block(task: str, recipe_config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The parameters the task's recipe declares (its config's ``DECLARED``: name -> field), with this build's
    values and build options: what the trainer checks a run against, without knowing the config's keys."""
    names: dict[str, str] = getattr(RECIPES[task].config_type, "DECLARED", {})
    return {name: declaration(recipe_config[key], key) for name, key in names.items()}


def _reason_counts(rejects: pa.Table, kind: str) -> dict[str, int]:
    rows = rejects.filter(pc.equal(rejects.column("kind"), kind)).column("reason").to_pylist()
    return dict(sorted(Counter(rows).items()))


def write_manifest(plan: BuildPlan) -> Manifest:
    """Check that every shard is done, merge the parts, write the manifest atomically and return it."""
    out = plan.out
    done = done_shards(out, plan.task, plan.num_shards)
    missing = [i for i in range(plan.num_shards) if i not in done]
    if missing:
        raise RuntimeError(f"shards not built yet: {missing[:10]}{' ...' if len(missing) > 10 else ''}")
    stats = [done[i] for i in range(plan.num_shards)]
    names = [Path(s["url"]).stem for s in stats]
    index = concat_parts(out, names, "index", INDEX_SCHEMA, loc.join(out, INDEX_FILE))
    rejects = concat_parts(out, names, "rejects", REJECT_SCHEMA, loc.join(out, REJECTS_FILE))
    check_accounting(plan, index, rejects)
    counts: dict[str, np.ndarray] = {}
    for s in stats:
        for key, value in s["counts"].items():
            counts[key] = counts.get(key, 0) + np.asarray(value, dtype=np.int64)
    rejected, filtered = _reason_counts(rejects, "rejected"), _reason_counts(rejects, "filtered")
    total_bytes, samples = sum(s["filesize"] for s in stats), index.num_rows
    manifest: Manifest = {
        "__kind__": "wids-shard-index-v1",
        "wids_version": 1,
        "name": plan.task,
        "task": plan.task,
        "schema_version": plan.config["schema_version"],
        "config": plan.config,
        "config_hash": plan.config_hash,
        "versions": package_versions(),
        "source": {"root": plan.source_root, "inputs": plan.inputs, "inputs_hash": plan.inputs_hash},
        "shardlist": [{k: s[k] for k in ("url", "nsamples", "filesize", "md5sum")} for s in stats],
        "totals": {
            "shards": len(stats),
            "samples": samples,
            "rejected": sum(rejected.values()),
            "filtered": sum(filtered.values()),
            "bytes": total_bytes,
            "bytes_per_sample": round(total_bytes / samples, 1) if samples else None,
        },
        "rejects": rejected,
        "filtered": filtered,
        "declared": declared_block(plan.task, plan.config["recipe"]),
        **summarize_counts(plan.task, counts),
    }
    loc.write_json(loc.join(out, MANIFEST_FILE), manifest)
    return manifest
