"""Finding the shard sets of a run by their manifests, and refusing any set the run cannot use.

``mtssl-train --shards shards/`` looks for ``manifest.json`` in ``shards/`` itself (one set) or in its
sub-folders (one set each; the task is the manifest's, not the folder's name). A set is refused, with
one :class:`ShardSetError` that says what to do, when it is:

- missing (a requested task has no set) or unfinished (a task folder without ``manifest.json``);
- corrupt: unreadable manifest, a listed shard missing or of another size than the manifest says, or
  (``verify=True``) another md5 than the manifest says;
- of another schema version than this mtssl reads (:data:`mtssl.contract.READABLE_SCHEMA_VERSIONS`);
- built with options that contradict the run: a patch or view size other than ``--patch-size``, a
  motion crop larger than the stored frames, fewer than 2 exemplar views, no ab prior in a colour set,
  or without the fields the run's input mode reads (checked on the set's first stored sample).

A set may live in a local folder or at an fsspec URL (``s3://bucket/prefix/color``): see
``mtssl.data.locations``. Nothing here imports torch or webdataset.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mtssl.contract import MANIFEST_FILE, NUM_AB_BINS, PLAN_FILE, READABLE_SCHEMA_VERSIONS, TASK_FIELDS, TASKS, md5_file
from mtssl.data.locations import LocationError, is_dir, is_file, is_url, join, read_bytes, resolve, size, subfolders

REQUIRED_KEYS = ("task", "schema_version", "config", "shardlist", "totals")


class ShardSetError(ValueError):
    """A shard set is missing, corrupt, of another schema, or contradicts the run's options."""


@dataclass(frozen=True)
class ShardSet:
    """A checked shard set: its folder, its manifest and the hash of the manifest's bytes."""

    task: str
    root: str  # an absolute folder path or a URL (mtssl.data.locations)
    manifest: dict[str, Any]
    manifest_hash: str

    @property
    def urls(self) -> list[str]:
        """Absolute paths of the non-empty shards (an empty shard would only stall a resampled stream)."""
        return [join(self.root, s["url"]) for s in self.manifest["shardlist"] if s["nsamples"] > 0]

    def md5_by_url(self) -> dict[str, str]:
        """Shard location -> the manifest's md5 of it."""
        return {join(self.root, e["url"]): e["md5sum"] for e in self.manifest["shardlist"]}

    def split(self, val_shards: int) -> tuple[list[str], list[str]]:
        """(train, validation) shard paths: the last ``val_shards`` full shards are held out.

        The build pre-shuffles samples across shards, so any shard is a random sample of the set. "Full"
        means at least half the largest shard's samples: the build's last shard holds the remainder, which
        may be a handful of samples, too few for a validation batch. No shard is held out when that would
        leave fewer than two for training (a small set: build it with a smaller ``--samples-per-shard``).
        """
        entries = [e for e in self.manifest["shardlist"] if e["nsamples"] > 0]
        largest = max((e["nsamples"] for e in entries), default=0)
        full = [i for i, e in enumerate(entries) if 2 * e["nsamples"] >= largest]
        held = set(full[-val_shards:]) if val_shards > 0 else set()
        if len(entries) - len(held) < 2:
            held = set()
        urls = [join(self.root, e["url"]) for e in entries]
        return [u for i, u in enumerate(urls) if i not in held], [u for i, u in enumerate(urls) if i in held]

    @property
    def samples(self) -> int:
        return int(self.manifest["totals"]["samples"])

    @property
    def recipe(self) -> dict[str, Any]:
        return self.manifest["config"].get("recipe", {})

    @property
    def ab_prior(self) -> list[float] | None:
        return self.manifest.get("ab_prior")

    def build_hint(self) -> str:
        return f"mtssl-data build {self.task} ... --out {self.root} --overwrite"


def file_hash(path: str | Path) -> str:
    """First 16 hex digits of the SHA-256 of a file's bytes (identical builds give identical manifests)."""
    return hashlib.sha256(read_bytes(path)).hexdigest()[:16]


# ---- finding sets ------------------------------------------------------------------------------------


def discover(shards: str | Path) -> dict[str, str]:
    """Task -> set location for every manifest in ``shards`` or one level below; refuses unfinished task folders."""
    if not is_dir(shards):
        raise ShardSetError(f"{shards} is not a folder: pass --shards the folder that holds the shard sets")
    if is_file(join(shards, MANIFEST_FILE)):
        return {read_manifest(shards)["task"]: resolve(shards)}
    found: dict[str, str] = {}
    for folder in subfolders(shards):
        name = folder.rstrip("/").rsplit("/", 1)[-1]
        if not is_file(join(folder, MANIFEST_FILE)):
            if name in TASKS and (is_file(join(folder, PLAN_FILE)) or _holds_tars(folder)):
                found.setdefault(name, folder)  # unfinished: load_set says so if the run needs it
            continue
        task = read_manifest(folder)["task"]
        if task in found and is_file(join(found[task], MANIFEST_FILE)):
            raise ShardSetError(f"two {task} shard sets under {shards}: {found[task]} and {folder}; keep one")
        found[task] = folder
    return found


def _holds_tars(folder: str) -> bool:
    return not is_url(folder) and any(Path(folder).glob("*.tar"))


def read_manifest(folder: str | Path) -> dict[str, Any]:
    """Parse and sanity-check ``folder/manifest.json`` (keys, task, schema version)."""
    path = join(folder, MANIFEST_FILE)
    if not is_file(path):
        raise ShardSetError(
            f"{folder} has no {MANIFEST_FILE}: the build did not finish. Rerun the same `mtssl-data build` "
            "command to complete it (finished shards are kept)"
        )
    try:
        manifest = json.loads(read_bytes(path))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ShardSetError(f"{path} is corrupt (not valid JSON: {exc}); rebuild the set with --overwrite") from exc
    missing = [key for key in REQUIRED_KEYS if key not in manifest] if isinstance(manifest, dict) else REQUIRED_KEYS
    if missing:
        raise ShardSetError(f"{path} is corrupt (lacks {', '.join(missing)}); rebuild the set with --overwrite")
    if manifest["task"] not in TASKS:
        raise ShardSetError(f"{path}: unknown task {manifest['task']!r}, expected one of {', '.join(TASKS)}")
    if manifest["schema_version"] not in READABLE_SCHEMA_VERSIONS:
        raise ShardSetError(
            f"{path}: shard schema version {manifest['schema_version']}, but this mtssl reads versions "
            f"{', '.join(map(str, READABLE_SCHEMA_VERSIONS))}. Rebuild the set with this version: "
            f"mtssl-data build {manifest['task']} ... --out {folder} --overwrite"
        )
    return manifest


def check_shards(sset: ShardSet, verify: bool = False) -> None:
    """Every listed shard is present with the manifest's size (and md5 with ``verify``)."""
    problems = []
    for entry in sset.manifest["shardlist"]:
        path = join(sset.root, entry["url"])
        found = size(path)
        if found is None:
            problems.append(f"{entry['url']} is missing")
        elif found != entry["filesize"]:
            problems.append(f"{entry['url']} has {found} bytes, the manifest says {entry['filesize']}")
        elif verify and _md5(path) != entry["md5sum"]:
            problems.append(f"{entry['url']} fails its md5 check")
    if problems:
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise ShardSetError(
            f"{sset.task} shard set {sset.root} is corrupt: {shown}. Run `mtssl-data verify {sset.root}`, "
            f"then rebuild: {sset.build_hint()}"
        )
    if sset.samples <= 0 or not sset.urls:
        raise ShardSetError(f"{sset.task} shard set {sset.root} holds no samples; build it from more inputs")


def _md5(path: str) -> str:
    return hashlib.md5(read_bytes(path)).hexdigest() if is_url(path) else md5_file(path)


def load_set(folder: str | Path, verify: bool = False) -> ShardSet:
    """Read and check one set (manifest, schema, shards present with the right sizes); ``folder`` may be
    a URL. A location that cannot be read (missing bucket, refused credentials) is a ShardSetError."""
    try:
        manifest = read_manifest(folder)
        sset = ShardSet(manifest["task"], resolve(folder), manifest, file_hash(join(folder, MANIFEST_FILE)))
        check_shards(sset, verify)
    except LocationError as exc:
        raise ShardSetError(str(exc)) from None
    return sset


def open_sets(shards: str | Path, tasks: Sequence[str] | None = None, verify: bool = False) -> dict[str, ShardSet]:
    """The checked sets of ``tasks`` (all found when None), in the contract's task order."""
    try:
        found = discover(shards)
    except LocationError as exc:
        raise ShardSetError(str(exc)) from None
    unknown = sorted(set(tasks or ()) - set(TASKS))
    if unknown:
        raise ShardSetError(f"unknown task(s) {', '.join(unknown)}; tasks are {', '.join(TASKS)}")
    wanted = [t for t in TASKS if t in (tasks or found)]
    missing = [t for t in wanted if t not in found]
    unfinished = [shards] if not found and is_file(join(shards, PLAN_FILE)) else []
    if unfinished:
        raise ShardSetError(
            f"{unfinished[0]} holds a build without its {MANIFEST_FILE}: the build did not finish, or the file "
            "was removed. Rerun the same `mtssl-data build` command: it keeps the finished shards and writes "
            "the manifest"
        )
    if missing:
        have = ", ".join(f"{t} ({found[t]})" for t in TASKS if t in found) or "none"
        raise ShardSetError(
            f"no {', '.join(missing)} shard set under {shards} (found: {have}). Build it with "
            f"`mtssl-data build {missing[0]} ... --out {join(shards, missing[0])}` or leave it out of --tasks"
        )
    if not wanted:
        raise ShardSetError(f"no shard set under {shards}: build one with `mtssl-data build TASK --out {shards}/TASK`")
    return {task: load_set(found[task], verify) for task in wanted}


# ---- compatibility with the run ----------------------------------------------------------------------


@dataclass(frozen=True)
class RunNeeds:
    """What a run asks of one set: contract fields it decodes, and the options that must agree."""

    fields: tuple[str, ...]
    patch_size: int | None = None  # relpos patch / exemplar view side the run expects; None accepts the set's
    motion_crop: int | None = None  # side of the square motion crops; must fit the stored frames
    input_mode: str = "harmonized"


def first_sample_fields(path: str | Path) -> set[str]:
    """Fields (member extensions) of the first sample of a tar, reading only its first members."""
    fields: set[str] = set()
    key = None
    try:
        with _open_stream(path) as fh, tarfile.open(fileobj=fh, mode="r|") as tar:
            for member in tar:
                base = member.name.rsplit("/", 1)[-1]
                name, _, ext = base.partition(".")
                if key is not None and name != key:
                    break
                key = name
                fields.add(ext)
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ShardSetError(f"{path} is not a readable tar ({exc}); rebuild the set with --overwrite") from exc
    return fields


def _open_stream(path: str | Path):
    if not is_url(path):
        return open(path, "rb")
    import fsspec

    return fsspec.open(str(path), "rb").open()


def check_run(sset: ShardSet, needs: RunNeeds) -> None:
    """Refuse a set whose build options contradict the run (see the module docstring)."""
    where = f"{sset.task} shard set {sset.root}"
    lacking = [f for f in needs.fields if f not in TASK_FIELDS[sset.task]]
    if not lacking:
        lacking = [f for f in needs.fields if f not in first_sample_fields(sset.urls[0])]
    if lacking:
        raise ShardSetError(
            f"{where} has no {', '.join(lacking)} field, which input mode {needs.input_mode!r} reads; rebuild it "
            f"with this mtssl ({sset.build_hint()}) or pick the other --input-mode"
        )
    for check in CHECKS.get(sset.task, ()):
        check(sset, needs, where)


def _check_patch(option: str, build_flag: str):
    def check(sset: ShardSet, needs: RunNeeds, where: str) -> None:
        built = sset.recipe.get(option)
        if needs.patch_size is not None and built != needs.patch_size:
            raise ShardSetError(
                f"{where} was built with {option} {built} (config.recipe.{option}), but this run expects "
                f"--patch-size {needs.patch_size}. Pass --patch-size {built}, or rebuild the set with "
                f"`mtssl-data build {sset.task} {build_flag} {needs.patch_size} ... --out {sset.root} --overwrite`"
            )

    return check


def _check_views(sset: ShardSet, needs: RunNeeds, where: str) -> None:
    views = sset.recipe.get("views", 0)
    if views < 2:
        raise ShardSetError(
            f"{where} stores {views} view(s) per image; the triplet loss needs anchor and positive views. "
            f"Rebuild with `mtssl-data build exemplar --views 4 ... --out {sset.root} --overwrite`"
        )


def _check_prior(sset: ShardSet, needs: RunNeeds, where: str) -> None:
    prior = sset.ab_prior
    if not isinstance(prior, list) or len(prior) != NUM_AB_BINS:
        raise ShardSetError(
            f"{where} has no {NUM_AB_BINS}-bin ab_prior in its manifest (class rebalancing needs it); "
            f"rebuild it: {sset.build_hint()}"
        )


def _check_crop(sset: ShardSet, needs: RunNeeds, where: str) -> None:
    size = sset.recipe.get("size")
    if needs.motion_crop is not None and size is not None and needs.motion_crop > size:
        raise ShardSetError(
            f"{where} stores frames whose shorter side is {size} (config.recipe.size), smaller than "
            f"--motion-crop {needs.motion_crop}. Pass --motion-crop {size} or less, or rebuild with "
            f"`mtssl-data build motion --size {needs.motion_crop} ... --out {sset.root} --overwrite`"
        )


CHECKS = {
    "relpos": (_check_patch("patch", "--patch"),),
    "exemplar": (_check_patch("view_size", "--view-size"), _check_views),
    "color": (_check_prior,),
    "motion": (_check_crop,),
}


def manifest_hashes(sets: Iterable[ShardSet]) -> dict[str, str]:
    """Task -> manifest hash, as stored in checkpoints."""
    return {s.task: s.manifest_hash for s in sets}
