"""Build rate per worker of each image task, as a ratio to merely decoding the same source JPEGs.

Everything runs in this one process with ``cv2.setNumThreads(1)``, i.e. what one Ray worker does:

* build: ``pipelines.shardjob.build_shard`` for every shard of the task's plan (``plan_build`` with
  the recipe's default Config, then ``prepare_out_dir``) into a fresh temporary folder. That is load
  (``load_rgb`` with the recipe's ``min_side`` and ``draft_side``) + recipe + encode + webdataset tar
  write + fsync + md5 + the shard's Parquet index/reject parts and stats file. Rate = inputs / wall time.
* decode (the baseline): ``pipelines.imageio.load_rgb(path)`` with default arguments for every input:
  read the file, Pillow header checks, full-resolution JPEG decode (no draft), EXIF transpose and
  conversion to an (H, W, 3) uint8 RGB array. Nothing is written.

Noise: one untimed warm-up of everything first (page cache, imports, tables built lazily once per
process), then ``--repeat`` rounds; in each round every task's build is timed right after its own
decode pass, and the order of the tasks rotates from round to round. The figures are the best-of-N
wall-clock rates and their ratio. Both passes are single-threaded, so the same ratio on this
process's CPU time (``time.process_time``) estimates the idle-machine ratio even while other
processes compete for the cores; a warning is printed when the two clocks disagree. The cold column
is the warm-up build, the first in the process, which pays the per-process one-time costs.

Bytes per sample is the manifest's ``totals.bytes_per_sample`` (``write_manifest``, as ``run_plan``
ends) of the last build of each task.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
from common import (
    TASKS,
    VARIANTS,
    Tree,
    default_config,
    describe_tree,
    image_paths,
    print_machine,
    print_table,
    write_json,
    write_tree,
)

from pipelines.build import plan_build
from pipelines.imageio import load_rgb
from pipelines.manifest import write_manifest
from pipelines.plan import BuildPlan, prepare_out_dir
from pipelines.shardjob import build_shard

TARGETS = {"relpos": 0.5, "color": 0.6, "exemplar": 0.35}
CONTENDED = 0.05  # wall time this much above CPU time means another process shared our core


@dataclass(frozen=True)
class Timing:
    """Wall-clock and process CPU seconds of one timed pass."""

    wall: float
    cpu: float


@dataclass
class TaskTimes:
    """Every timed decode and build pass of one task on one tree."""

    task: str
    inputs: int
    cold_build: Timing | None = None
    decode: list[Timing] = field(default_factory=list)
    build: list[Timing] = field(default_factory=list)
    rejected: int = 0
    bytes_per_sample: float | None = None

    def rate(self, kind: str, clock: str = "wall") -> float:
        """Best-of-N images/s of ``decode`` or ``build`` on the wall or CPU clock."""
        return self.inputs / min(getattr(t, clock) for t in getattr(self, kind))

    def ratio(self, clock: str = "wall") -> float:
        return self.rate("build", clock) / self.rate("decode", clock)

    def contention(self) -> float:
        """How much longer the best wall times were than the best CPU times (0 on an idle machine)."""
        return max(self.rate(kind, "cpu") / self.rate(kind, "wall") for kind in ("decode", "build")) - 1


def timed(fn: Callable[[], object]) -> Timing:
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return Timing(time.perf_counter() - wall, time.process_time() - cpu)


def decode_all(paths: list[Path]) -> None:
    """The baseline: decode every file at full resolution with the build's loader."""
    for path in paths:
        load_rgb(path)


def prepared_plan(task: str, root: Path, out: Path, samples_per_shard: int) -> BuildPlan:
    plan = plan_build(task, root, out, default_config(task), samples_per_shard=samples_per_shard)
    prepare_out_dir(plan, overwrite=False)
    return plan


def build_all(plan: BuildPlan) -> None:
    """What workers run, here in one process: ``build_shard`` for every shard of the plan."""
    for index in range(plan.num_shards):
        build_shard(plan.task, plan.config, plan.source_root, plan.out, index, plan.shard_units(index))


def measure_tree(tree: Tree, tasks: list[str], repeat: int, samples_per_shard: int, workdir: Path) -> list[TaskTimes]:
    paths = image_paths(tree.root)
    times = {task: TaskTimes(task, len(paths)) for task in tasks}
    decode_all(paths)  # warm-up: page cache and decoder
    for task in tasks:
        plan = prepared_plan(task, tree.root, workdir / f"{tree.name}-{task}-cold", samples_per_shard)
        times[task].cold_build = timed(lambda plan=plan: build_all(plan))
    for round_ in range(repeat):
        order = tasks[round_ % len(tasks) :] + tasks[: round_ % len(tasks)]
        for task in order:
            plan = prepared_plan(task, tree.root, workdir / f"{tree.name}-{task}-{round_}", samples_per_shard)
            times[task].decode.append(timed(lambda: decode_all(paths)))
            times[task].build.append(timed(lambda plan=plan: build_all(plan)))
            if round_ == repeat - 1:
                totals = write_manifest(plan)["totals"]
                times[task].bytes_per_sample = totals["bytes_per_sample"]
                times[task].rejected = totals["rejected"]
            shutil.rmtree(plan.out)
    return list(times.values())


HEADERS = [
    "task",
    "decode img/s",
    "build img/s",
    "ratio",
    "ratio (CPU time)",
    "target",
    "met",
    "cold build img/s",
    "bytes/sample",
    "rejected",
]


def report_row(r: TaskTimes) -> list[str]:
    target = TARGETS.get(r.task, 0.0)
    cold = r.inputs / r.cold_build.wall if r.cold_build else float("nan")
    return [
        r.task,
        f"{r.rate('decode'):.0f}",
        f"{r.rate('build'):.0f}",
        f"{r.ratio():.2f}x",
        f"{r.ratio('cpu'):.2f}x",
        f">= {target:.2f}x",
        "yes" if r.ratio() >= target else "NO",
        f"{cold:.0f}",
        f"{r.bytes_per_sample:,.0f}" if r.bytes_per_sample else "-",
        str(r.rejected),
    ]


def tree_figures(results: list[TaskTimes]) -> dict[str, dict[str, float]]:
    """Per task: build and decode rates (images/s, wall and CPU clocks), their ratios, bytes per sample."""
    return {
        r.task: {
            "build_per_s": round(r.rate("build"), 1),
            "decode_per_s": round(r.rate("decode"), 1),
            "build_cpu_per_s": round(r.rate("build", "cpu"), 1),
            "decode_cpu_per_s": round(r.rate("decode", "cpu"), 1),
            "build_over_decode": round(r.ratio(), 3),
            "build_over_decode_cpu": round(r.ratio("cpu"), 3),
            "target": TARGETS.get(r.task, 0.0),
            "bytes_per_sample": r.bytes_per_sample,
            "rejected": r.rejected,
        }
        for r in results
    }


def report(tree: Tree, results: list[TaskTimes], repeat: int) -> None:
    print(f"\n## {tree.name}: {describe_tree(image_paths(tree.root))} ({tree.root})")
    print_table(HEADERS, [report_row(r) for r in results])
    for r in results:
        if r.contention() > CONTENDED:
            print(
                f"warning: {r.task}: best wall times exceed CPU times by {r.contention():.0%}: other load "
                "took our core; trust the CPU-time ratio or rerun on a quieter machine"
            )
    print(
        f"(rates: images/s in one process, best of {repeat} interleaved wall-clock runs; "
        "ratio = build / decode; "
        "ratio (CPU time) = the same on this process's CPU time, which other processes' load barely moves; "
        "cold = the warm-up build, the first in this process, not used in the ratio)"
    )


def profile_builds(tree: Tree, tasks: list[str], top: int, samples_per_shard: int, workdir: Path) -> None:
    """cProfile one (warm) build of each task and print its ``top`` functions by own time."""
    import cProfile
    import pstats

    for task in tasks:
        plan = prepared_plan(task, tree.root, workdir / f"{tree.name}-{task}-profile", samples_per_shard)
        profiler = cProfile.Profile()
        profiler.runcall(build_all, plan)
        print(f"\n## profile: {task} on {tree.name} (top {top} by own time)")
        pstats.Stats(profiler, stream=sys.stdout).sort_stats("tottime").print_stats(top)
        shutil.rmtree(plan.out)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=Path, help="Use this image tree, not generated ones.")
    parser.add_argument(
        "--variants",
        nargs="+",
        default=["imagenet", "sample"],
        choices=list(VARIANTS),
        help="Generated trees: the ImageNet-like one (short side 375-750) and/or the sample.",
    )
    parser.add_argument("--count", type=int, default=360, help="Images per generated tree (about).")
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    parser.add_argument("--repeat", type=int, default=5, help="Timed rounds (best-of-N).")
    parser.add_argument("--samples-per-shard", type=int, default=1000, help="As the CLI default.")
    parser.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="N",
        help="Also cProfile one build per task on each tree and print the top N functions.",
    )
    parser.add_argument("--workdir", type=Path, help="Parent of the temporary folder (default: system temp).")
    parser.add_argument("--json", type=Path, default=None, help="Write every figure here (per tree and task).")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    cv2.setNumThreads(1)
    print_machine()
    with tempfile.TemporaryDirectory(prefix="mtssl-bench-", dir=args.workdir) as tmp:
        workdir = Path(tmp)
        trees = (
            [Tree("custom", args.images.resolve())]
            if args.images
            else [write_tree(workdir, variant, args.count) for variant in args.variants]
        )
        figures: dict[str, dict] = {}
        for tree in trees:
            results = measure_tree(tree, args.tasks, args.repeat, args.samples_per_shard, workdir)
            report(tree, results, args.repeat)
            figures[tree.name] = {"inputs": describe_tree(image_paths(tree.root)), "tasks": tree_figures(results)}
            if args.profile:
                profile_builds(tree, args.tasks, args.profile, args.samples_per_shard, workdir)
    if args.json:
        write_json(args.json, {"benchmark": "build_rate", "repeat": args.repeat, "trees": figures})


if __name__ == "__main__":
    main()
