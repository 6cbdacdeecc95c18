"""Reading a finished shard set back: summary (``info``) and a full integrity check (``verify``).

A set is a folder or a URL (``mtssl.contract.locations``): a set in a bucket is checked object by object,
each read whole into memory, as the trainer reads it."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mtssl.contract import MANIFEST_FILE, Manifest, ShardSetError, decode_sample, parse_manifest, tar_samples_of
from mtssl.contract import locations as loc
from pipelines.recipes import RECIPES


def load_manifest(shard_dir: str | Path) -> Manifest:
    """The set's manifest, checked; ShardSetError saying what is wrong: no such folder, no manifest in it, ..."""
    if not loc.is_url(shard_dir) and not loc.local(shard_dir).is_dir():
        there = loc.local(shard_dir).exists()
        raise ShardSetError(
            f"{shard_dir} is a file, not a shard set folder" if there else f"{shard_dir} does not exist"
        )
    path = loc.join(shard_dir, MANIFEST_FILE)
    try:
        data = loc.read_bytes(path)
    except FileNotFoundError:  # a local file, or an object (locations.LocationMissing)
        raise ShardSetError(
            f"{shard_dir} has no {MANIFEST_FILE}: not a finished shard set (build it, or resume it)"
        ) from None
    except loc.LocationError as exc:
        raise ShardSetError(str(exc)) from None
    manifest = parse_manifest(data, path, f"mtssl-data build {{task}} ... --out {shard_dir} --overwrite")
    if manifest["task"] not in RECIPES:
        raise ShardSetError(f"{path}: unknown task {manifest['task']!r}; this mtssl builds {', '.join(RECIPES)}")
    return manifest


def by_reason(counts: dict[str, int]) -> str:
    """``{"too small": 6, "unreadable": 2}`` -> ``"6 too small, 2 unreadable"``: most first."""
    return ", ".join(f"{n:,} {reason}" for reason, n in sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def share(part: int, whole: int) -> float | None:
    """``part`` as a fraction of ``whole`` (0..1, as JSON keeps it); None when there is no whole."""
    return part / whole if whole else None


def percent(part: int, whole: int) -> str:
    """``part`` as a percentage of ``whole`` for people: ``20.0%`` (the project's form for shares)."""
    fraction = share(part, whole)
    return "-" if fraction is None else f"{fraction:.1%}"


def set_summary(shard_dir: str | Path, manifest: Manifest) -> dict[str, Any]:
    """``mtssl-data info --json``: what the set holds, its rejected inputs and filtered frames by reason, and
    the shares they are (fractions 0..1 of the inputs, and of the frames considered)."""
    totals, source = manifest["totals"], manifest["source"]
    filtered = totals.get("filtered", 0)
    return {
        "set": str(shard_dir),
        "task": manifest["task"],
        "source": {"root": source["root"], "inputs": source["inputs"]},
        "totals": dict(totals),
        "shares": {
            "rejected": share(totals["rejected"], source["inputs"]),
            "filtered": share(filtered, totals["samples"] + filtered),
        },
        "rejects": dict(manifest.get("rejects") or {}),
        "filtered": dict(manifest.get("filtered") or {}),
        "config_hash": manifest["config_hash"],
        "schema_version": manifest["schema_version"],
        "declared": dict(manifest.get("declared") or {}),
    }


def iter_tar_samples(path: str | Path) -> Iterator[dict[str, Any]]:
    """The samples of a shard (a file or an object), as webdataset groups them; no decoding
    (``contract.tar_samples_of``)."""
    yield from tar_samples_of(loc.read_bytes(path), str(path))


@dataclass
class VerifyReport:
    shards: int = 0
    samples: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_json(self) -> dict[str, Any]:
        """``mtssl-data verify --json``."""
        return {"ok": self.ok, "samples": self.samples, "shards": self.shards, "problems": list(self.problems)}


def verify_shard(shard_dir: str | Path, task: str, entry: dict[str, Any]) -> tuple[int, list[str]]:
    """Checksum, size, sample count and a full decode of one shard; returns (samples, problems)."""
    path = loc.join(shard_dir, entry["url"])
    try:
        data = loc.read_bytes(path)
    except FileNotFoundError:  # a local file, or an object (locations.LocationMissing)
        return 0, [f"{entry['url']}: missing"]
    except loc.LocationError as exc:
        return 0, [f"{entry['url']}: {exc}"]
    problems = []
    if len(data) != entry["filesize"]:
        problems.append(f"{entry['url']}: size {len(data)} != manifest {entry['filesize']}")
    if hashlib.md5(data).hexdigest() != entry["md5sum"]:
        problems.append(f"{entry['url']}: md5 mismatch")
    count = 0
    try:
        for sample in tar_samples_of(data, path):
            try:
                decode_sample(sample, (*RECIPES[task].fields, "json"))
            except ValueError as exc:
                problems.append(f"{entry['url']}/{sample['__key__']}: {exc}")
            count += 1
    except (ValueError, OSError) as exc:
        problems.append(f"{entry['url']}: unreadable tar ({exc})")
    if count != entry["nsamples"]:
        problems.append(f"{entry['url']}: {count} samples, manifest says {entry['nsamples']}")
    return count, problems


def verify_set(shard_dir: str | Path, on_shard=None) -> VerifyReport:
    """Verify every shard listed in the manifest; also flag tars in the folder the manifest lacks."""
    manifest = load_manifest(shard_dir)
    report = VerifyReport()
    listed = {entry["url"] for entry in manifest["shardlist"]}
    for entry in manifest["shardlist"]:
        count, problems = verify_shard(shard_dir, manifest["task"], entry)
        report.shards += 1
        report.samples += count
        report.problems.extend(problems)
        if on_shard is not None:
            on_shard(entry)
    report.problems.extend(
        f"{name}: not in the manifest"
        for name in sorted(loc.listing(shard_dir))
        if name.endswith(".tar") and name not in listed
    )
    if report.samples != manifest["totals"]["samples"]:
        report.problems.append(f"{report.samples} samples in total, manifest says {manifest['totals']['samples']}")
    if report.samples == 0:
        rejects = by_reason(manifest.get("rejects") or {}) or "none"
        report.problems.append(f"the set holds no sample: nothing to train on (rejected inputs: {rejects})")
    return report
