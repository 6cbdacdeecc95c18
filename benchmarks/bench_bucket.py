"""Shard sets in a bucket against shard sets on disk: the trainer's loader streaming from a local S3 server
vs from local disk, per task, and the build into the bucket vs onto disk, as ratios in one run.

The server is moto's standalone S3 server on this machine (``tests/s3kit.py``: the one the tests use), so the
figures measure the client's overhead (s3fs requests, whole-object reads, the md5 of every object read: an
object has no inode to trust, so it is hashed on each read), not a network. Both sides run in alternation,
``--repeat`` times, best rate of each counts.

* loader: ``bench_loader.shard_loader`` (the trainer's ``make_loader`` over a ``StepStream``, one worker,
  batches of ``--batch``, md5 checks on) over the same set, once from its folder, once from its copy in
  the bucket (``mtssl.data.shardsets.load_set`` of the URL).
* build: ``pipelines.build.build`` of relpos, colour and exemplar in this process (``workers=0``, no Ray)
  from the same ImageNet-like tree (``common.write_tree``), into a fresh folder and into a fresh prefix;
  inputs per second of wall time, planning and the manifest included.

usage: .venv/bin/python benchmarks/bench_bucket.py [--images 120] [--seconds 5] [--repeat 2] [--json OUT]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from bench_loader import TASKS, prepare, rate, shard_loader, task_fields, trainer_side
from common import default_config, print_machine, print_table, write_json

from mtssl.data.shardsets import load_set
from pipelines.build import build

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.s3kit import environment, fresh_s3fs, moto_server  # noqa: E402 - the tests' server, not a copy

BUCKET = "mtssl-bench"
BUILD_TASKS = ("relpos", "color", "exemplar")


def upload(fs, folder: Path, prefix: str) -> str:
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            fs.put_file(str(path), f"{prefix}/{path.relative_to(folder).as_posix()}")
    fs.invalidate_cache()
    return f"s3://{prefix}"


def loader_rates(sets: dict, bucket_sets: dict, args: argparse.Namespace) -> dict[str, dict[str, float]]:
    results = {}
    for task, sset in sets.items():
        fields = task_fields(task)
        sides = {}
        for side, chosen in (("disk", sset), ("bucket", bucket_sets[task])):
            loader, stream = shard_loader(chosen, fields, args.batch)
            sides[side] = (iter(loader), trainer_side(stream))
        best = {"disk": 0.0, "bucket": 0.0}
        for _ in range(args.repeat):
            for side, (iterator, consume) in sides.items():
                best[side] = max(best[side], rate(iterator, args.batch, args.seconds, consume)[0])
        results[task] = {
            "disk_per_s": round(best["disk"], 1),
            "bucket_per_s": round(best["bucket"], 1),
            "bucket_over_disk": round(best["bucket"] / best["disk"], 3),
        }
    return results


def build_rates(images: Path, workdir: Path, args: argparse.Namespace) -> dict[str, dict[str, float]]:
    results = {}
    for task in BUILD_TASKS:
        best = {"disk": 0.0, "bucket": 0.0}
        for attempt in range(args.repeat):
            for side in ("disk", "bucket"):
                out = str(workdir / f"b{attempt}" / task) if side == "disk" else f"s3://{BUCKET}/b{attempt}/{task}"
                start = time.perf_counter()
                report = build(task, images, out, default_config(task), workers=0, samples_per_shard=50,
                               show_progress=False)  # fmt: skip
                inputs = report.manifest["source"]["inputs"]
                best[side] = max(best[side], inputs / (time.perf_counter() - start))
        results[task] = {
            "disk_per_s": round(best["disk"], 1),
            "bucket_per_s": round(best["bucket"], 1),
            "bucket_over_disk": round(best["bucket"] / best["disk"], 3),
        }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=120, help="source images (ImageNet-like sizes)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=5.0, help="minimum measuring time per loader run")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--json", type=Path, default=None, help="write every figure here")
    args = parser.parse_args()
    print_machine()
    with tempfile.TemporaryDirectory() as tmp, moto_server() as variables, environment(variables):
        fs = fresh_s3fs()
        fs.mkdir(BUCKET)
        images, _, sets = prepare(Path(tmp), args.images, args.tasks.split(","))
        bucket_sets = {t: load_set(upload(fs, Path(s.root), f"{BUCKET}/sets/{t}")) for t, s in sets.items()}
        loaders = loader_rates(sets, bucket_sets, args)
        builds = build_rates(images, Path(tmp), args)
    print(f"\nloader, samples/s of one worker, batches of {args.batch}\n")
    rows = [
        [t, f"{r['disk_per_s']:.0f}", f"{r['bucket_per_s']:.0f}", f"{r['bucket_over_disk']:.2f}"]
        for t, r in loaders.items()
    ]
    print_table(["task", "from disk", "from the bucket", "bucket / disk"], rows)
    print("\nbuild, inputs/s in this process (no Ray)\n")
    rows = [
        [t, f"{r['disk_per_s']:.1f}", f"{r['bucket_per_s']:.1f}", f"{r['bucket_over_disk']:.2f}"]
        for t, r in builds.items()
    ]
    print_table(["task", "onto disk", "into the bucket", "bucket / disk"], rows)
    if args.json:
        write_json(args.json, {"benchmark": "bucket", "batch": args.batch, "loader": loaders, "build": builds})


if __name__ == "__main__":
    main()
