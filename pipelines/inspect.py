"""Reading a finished shard set back: summary (``info``) and a full integrity check (``verify``)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mtssl.contract import (
    MANIFEST_FILE,
    Manifest,
    ShardSetError,
    decode_sample,
    md5_file,
    parse_manifest,
    tar_samples_of,
)
from pipelines.recipes import RECIPES


def load_manifest(shard_dir: Path) -> Manifest:
    path = Path(shard_dir) / MANIFEST_FILE
    if not path.exists():
        raise ShardSetError(f"{shard_dir} has no {MANIFEST_FILE}: not a finished shard set (build it, or resume it)")
    manifest = parse_manifest(
        path.read_bytes(), str(path), f"mtssl-data build {{task}} ... --out {shard_dir} --overwrite"
    )
    if manifest["task"] not in RECIPES:
        raise ShardSetError(f"{path}: unknown task {manifest['task']!r}; this mtssl builds {', '.join(RECIPES)}")
    return manifest


def iter_tar_samples(path: Path) -> Iterator[dict[str, Any]]:
    """The samples of a local shard, as webdataset groups them; no decoding (``contract.tar_samples_of``)."""
    yield from tar_samples_of(Path(path).read_bytes(), str(path))


@dataclass
class VerifyReport:
    shards: int = 0
    samples: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_shard(shard_dir: Path, task: str, entry: dict[str, Any]) -> tuple[int, list[str]]:
    """Checksum, size, sample count and a full decode of one shard; returns (samples, problems)."""
    path = Path(shard_dir) / entry["url"]
    if not path.exists():
        return 0, [f"{entry['url']}: missing"]
    problems = []
    if path.stat().st_size != entry["filesize"]:
        problems.append(f"{entry['url']}: size {path.stat().st_size} != manifest {entry['filesize']}")
    if md5_file(path) != entry["md5sum"]:
        problems.append(f"{entry['url']}: md5 mismatch")
    count = 0
    try:
        for sample in iter_tar_samples(path):
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


def verify_set(shard_dir: Path, on_shard=None) -> VerifyReport:
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
        f"{p.name}: not in the manifest" for p in sorted(Path(shard_dir).glob("*.tar")) if p.name not in listed
    )
    if report.samples != manifest["totals"]["samples"]:
        report.problems.append(f"{report.samples} samples in total, manifest says {manifest['totals']['samples']}")
    if report.samples == 0:
        rejects = manifest.get("rejects") or {}
        report.problems.append(f"the set holds no sample: nothing to train on (rejects by reason: {rejects})")
    return report
