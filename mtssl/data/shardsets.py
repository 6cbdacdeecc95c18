"""Finding the shard sets of a run by their manifests, and refusing any set the run cannot use.

``mtssl-train --shards shards/`` looks for ``manifest.json`` in ``shards/`` itself (one set) or in its
sub-folders (one set each; the task is the manifest's, not the folder's name). A set is refused, with
one :class:`ShardSetError` that says what to do, when it is:

- missing (a requested task has no set) or unfinished (a task folder without ``manifest.json``);
- corrupt: unreadable manifest, a listed shard missing or of another size than the manifest says, or
  (``verify=True``) another md5 than the manifest says;
- of another schema version than this mtssl reads (:data:`mtssl.contract.READABLE_SCHEMA_VERSIONS`);
- without the fields the run's input mode reads (checked on the set's first stored sample), or built
  with parameters that contradict the run by its task's own checks (``Task.check_set`` in
  ``mtssl/tasks/<task>.py``: e.g. a patch side other than ``--task-opt relpos.patch_size``), which read the
  parameters its recipe declares (:attr:`ShardSet.declared`), not the recipe's config keys. The same check
  refuses a run option the task cannot train with (``RunOptionError``: exemplar with a batch of one).

A set may live in a local folder or at an fsspec URL (``s3://bucket/prefix/color``): see
``mtssl.contract.locations``. Nothing here imports torch or webdataset.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mtssl.contract import (
    MANIFEST_FILE,
    PLAN_FILE,
    ShardSetError,
    md5_file,
    parse_manifest,
    tar_members_of,
)
from mtssl.contract.locations import LocationError, is_dir, is_file, is_url, join, read_bytes, resolve, size, subfolders
from mtssl.contract.manifest import Declared, declared_parameters

if TYPE_CHECKING:
    from mtssl.tasks.base import RunOptions, Task


@dataclass(frozen=True)
class ShardSet:
    """A checked shard set: its folder, its manifest and the hash of the manifest's bytes."""

    task: str
    root: str  # an absolute folder path or a URL (mtssl.contract.locations)
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
    def declared(self) -> dict[str, Declared]:
        """The recipe parameters the set's manifest declares (``mtssl.contract.manifest.declared_parameters``)."""
        return declared_parameters(self.manifest)

    @property
    def where(self) -> str:
        """How messages name the set."""
        return f"{self.task} shard set {self.root}"

    def build_hint(self) -> str:
        return f"mtssl-data build {self.task} ... --out {self.root} --overwrite"


def file_hash(path: str | Path) -> str:
    """First 16 hex digits of the SHA-256 of a file's bytes (identical builds give identical manifests)."""
    return hashlib.sha256(read_bytes(path)).hexdigest()[:16]


# ---- finding sets ------------------------------------------------------------------------------------


def discover(shards: str | Path, known: Collection[str] = ()) -> dict[str, str]:
    """Task -> set location for every manifest in ``shards`` or one level below; refuses unfinished task
    folders (a folder named after one of the ``known`` tasks that holds a plan or tars, but no manifest)."""
    if not is_dir(shards):
        raise ShardSetError(f"{shards} is not a folder: pass --shards the folder that holds the shard sets")
    if is_file(join(shards, MANIFEST_FILE)):
        return {read_manifest(shards)["task"]: resolve(shards)}
    found: dict[str, str] = {}
    for folder in subfolders(shards):
        name = folder.rstrip("/").rsplit("/", 1)[-1]
        if not is_file(join(folder, MANIFEST_FILE)):
            if name in known and (is_file(join(folder, PLAN_FILE)) or _holds_tars(folder)):
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
    return parse_manifest(read_bytes(path), str(path), f"mtssl-data build {{task}} ... --out {folder} --overwrite")


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


def open_sets(
    shards: str | Path, known: Collection[str], tasks: Sequence[str] | None = None, verify: bool = False
) -> dict[str, ShardSet]:
    """The checked sets of ``tasks`` (all found when None) among the ``known`` ones (the consumer's task
    registry, ``mtssl.tasks.TASKS``), in the order of ``known``."""
    try:
        found = discover(shards, known)
    except LocationError as exc:
        raise ShardSetError(str(exc)) from None
    unknown = sorted(set(tasks or ()) - set(known)) or sorted(set(found) - set(known))
    if unknown:
        raise ShardSetError(f"unknown task(s) {', '.join(unknown)} under {shards}; tasks are {', '.join(known)}")
    wanted = [t for t in known if t in (tasks or found)]
    missing = [t for t in wanted if t not in found]
    unfinished = [shards] if not found and is_file(join(shards, PLAN_FILE)) else []
    if unfinished:
        raise ShardSetError(
            f"{unfinished[0]} holds a build without its {MANIFEST_FILE}: the build did not finish, or the file "
            "was removed. Rerun the same `mtssl-data build` command: it keeps the finished shards and writes "
            "the manifest"
        )
    if missing:
        have = ", ".join(f"{t} ({found[t]})" for t in known if t in found) or "none"
        raise ShardSetError(
            f"no {', '.join(missing)} shard set under {shards} (found: {have}). Build it with "
            f"`mtssl-data build {missing[0]} ... --out {join(shards, missing[0])}` or leave it out of --tasks"
        )
    if not wanted:
        raise ShardSetError(f"no shard set under {shards}: build one with `mtssl-data build TASK --out {shards}/TASK`")
    return {task: load_set(found[task], verify) for task in wanted}


# ---- compatibility with the run ----------------------------------------------------------------------


def first_sample_fields(path: str | Path) -> set[str]:
    """Fields (member extensions) of the first sample of a shard (``contract.tar_members_of``)."""
    try:
        members = tar_members_of(read_bytes(path), str(path))
        key, field, _ = next(members)
        fields = {field}
        for other, field, _ in members:
            if other != key:
                break
            fields.add(field)
    except (ValueError, OSError, StopIteration) as exc:
        raise ShardSetError(
            f"{path} is not a readable shard ({exc or 'no member'}); rebuild the set with --overwrite"
        ) from exc
    return fields


def check_run(sset: ShardSet, task: type[Task], run: RunOptions, fields: Sequence[str]) -> None:
    """The one check of a task's set against the run: ``ShardSetError`` when the set lacks a contract field
    the run decodes (``fields``) or its declared parameters contradict the run, ``RunOptionError`` (from
    ``Task.check_set``) when a run option cannot train the task."""
    stored = first_sample_fields(sset.urls[0])
    lacking = [f for f in fields if f not in stored]
    if lacking:
        raise ShardSetError(
            f"{sset.where} has no {', '.join(lacking)} field, which input mode {run.input_mode!r} reads; rebuild it "
            f"with this mtssl ({sset.build_hint()}) or pick the other --input-mode"
        )
    task.check_set(sset, run)


def manifest_hashes(sets: Iterable[ShardSet]) -> dict[str, str]:
    """Task -> manifest hash, as stored in checkpoints."""
    return {s.task: s.manifest_hash for s in sets}
