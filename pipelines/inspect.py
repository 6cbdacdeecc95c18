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
        rejects = manifest.get("rejects") or {}
        report.problems.append(f"the set holds no sample: nothing to train on (rejects by reason: {rejects})")
    return report
