"""``manifest.json``: its named fields and the one parser both halves call."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, NamedTuple, TypedDict

from mtssl.contract.names import READABLE_SCHEMA_VERSIONS, ShardSetError


class ShardEntry(TypedDict):
    """One shard of ``Manifest.shardlist``, in the shape ``wids`` reads."""

    url: str
    nsamples: int
    filesize: int
    md5sum: str


class Manifest(TypedDict, total=False):
    """``manifest.json``, written last by the producer (``pipelines/manifest.py``): its named fields.

    The required ones are :data:`REQUIRED_KEYS`; a task's summaries (the colour set's ``ab_counts`` and
    ``ab_prior``) come from its recipe's ``summarize``; ``declared`` holds the recipe parameters the consumer
    may rely on (:func:`declared_parameters`).
    """

    __kind__: str  # "wids-shard-index-v1"
    wids_version: int
    name: str
    task: str
    schema_version: int
    config: dict[str, Any]  # the resolved build config (``config["recipe"]``: the recipe config's fields)
    config_hash: str
    versions: dict[str, str]
    source: dict[str, Any]  # root, inputs, inputs_hash
    shardlist: list[ShardEntry]
    totals: dict[str, Any]  # shards, samples, rejected, filtered, bytes, bytes_per_sample
    rejects: dict[str, int]
    filtered: dict[str, int]
    declared: dict[str, dict[str, Any]]  # name -> {"value": ..., "option": "--flag"} (see ``declaration``)
    ab_counts: list[int]
    ab_prior: list[float]


REQUIRED_KEYS = ("task", "schema_version", "config", "shardlist", "totals")


def parse_manifest(data: bytes, path: str, rebuild_hint: str) -> Manifest:
    """The one manifest reader: JSON, the required fields, a readable schema version; ``ShardSetError``
    otherwise (``rebuild_hint``: the command that rebuilds the set, ``{task}`` standing for its task)."""
    try:
        manifest = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ShardSetError(f"{path} is corrupt (not valid JSON: {exc}); rebuild the set with --overwrite") from exc
    missing = [key for key in REQUIRED_KEYS if key not in manifest] if isinstance(manifest, dict) else REQUIRED_KEYS
    if missing:
        raise ShardSetError(f"{path} is corrupt (lacks {', '.join(missing)}); rebuild the set with --overwrite")
    if manifest["schema_version"] not in READABLE_SCHEMA_VERSIONS:
        raise ShardSetError(
            f"{path}: shard schema version {manifest['schema_version']}, but this mtssl reads versions "
            f"{', '.join(map(str, READABLE_SCHEMA_VERSIONS))}. Rebuild the set with this version: "
            + rebuild_hint.replace("{task}", str(manifest["task"]))
        )
    return manifest


class Declared(NamedTuple):
    """A recipe parameter the consumer may rely on: the value the set was built with, and the
    ``mtssl-data build`` option that sets it (for messages that say how to rebuild)."""

    value: Any
    option: str


def declaration(value: Any, config_field: str) -> dict[str, Any]:
    """One entry of a manifest's ``declared`` block: a recipe config field's value and its build option
    (a top-level field ``view_size`` is set by ``--view-size``, as ``pipelines.build_options`` names it)."""
    return {"value": value, "option": "--" + config_field.replace("_", "-")}


# Sets built before manifests carried a ``declared`` block (up to commit c3a08c7) are read through the recipe
# config fields that held these parameters then. The one place the consumer names producer config keys.
_UNDECLARED_SETS: dict[str, dict[str, str]] = {
    "relpos": {"patch_side": "patch"},
    "exemplar": {"view_side": "view_size", "views": "views"},
    "motion": {"frame_side": "size"},
}


def declared_parameters(manifest: Mapping[str, Any]) -> dict[str, Declared]:
    """The recipe parameters a set's manifest declares (its ``declared`` block), by name."""
    block = manifest.get("declared")
    if block is None:
        recipe = manifest.get("config", {}).get("recipe", {})
        fields = _UNDECLARED_SETS.get(manifest.get("task", ""), {})
        block = {name: declaration(recipe[key], key) for name, key in fields.items() if key in recipe}
    return {name: Declared(entry["value"], entry["option"]) for name, entry in block.items()}
