"""The cost of checking each shard's md5 as the loader reads it: loader throughput with the check on and
off, per task, in one run.

    .venv/bin/python benchmarks/bench_shard_check.py --shards /work/exp/fshards [--batches 40] [--rounds 3]
        [--json OUT]

For each task: the trainer's per-task pipeline (``mtssl.data.stream.task_pipeline``: shards resampled,
read, shuffled, decoded, batched; one process, one thread) run for ``--batches`` batches of 16 with the
manifest's md5 of every shard checked as it is read (the default of ``mtssl-train``) and without, the
two alternating, best of ``--rounds``. With the check each shard is read whole into memory and hashed
before its members are parsed; without it, the reader seeks over the members the task does not read.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from itertools import islice
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2  # noqa: E402
import torch  # noqa: E402

from mtssl.data.shardsets import load_set  # noqa: E402
from mtssl.data.stream import TaskSpec, task_pipeline  # noqa: E402
from pipelines.recipes import RECIPES  # noqa: E402


def rate(spec: TaskSpec, batches: int) -> float:
    start = time.perf_counter()
    for _ in islice(iter(task_pipeline(spec, seed=0)), batches):
        pass
    return batches * spec.batch_size / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shards", type=Path, required=True)
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    results = {}
    print("| task | samples/s, md5 checked | samples/s, unchecked | ratio |\n|---|---|---|---|")
    for folder in sorted(p for p in args.shards.iterdir() if (p / "manifest.json").is_file()):
        sset = load_set(folder)
        urls = tuple(sset.urls)
        md5 = sset.md5_by_url()
        fields = (*RECIPES[sset.task].fields, "json")
        crop = 160 if sset.task == "motion" else None  # motion frames differ in size: the preset's crop
        checked = TaskSpec(sset.task, urls, fields, 16, crop, 64, tuple(md5[u] for u in urls))
        plain = TaskSpec(sset.task, urls, fields, 16, crop, 64)
        best = {"checked": 0.0, "plain": 0.0}
        for _ in range(args.rounds):
            best["checked"] = max(best["checked"], rate(checked, args.batches))
            best["plain"] = max(best["plain"], rate(plain, args.batches))
        results[sset.task] = {**best, "ratio": best["checked"] / best["plain"]}
        print(f"| {sset.task} | {best['checked']:.0f} | {best['plain']:.0f} | {results[sset.task]['ratio']:.2f}x |")
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
