"""Speed-up of a Ray build with 2 local workers over 1 on the same input, Ray start-up reported apart.

Each run is a fresh child process (this script with ``--child``) that plans the task's build with its
default Config (``plan_build``, ``--samples-per-shard`` 50 so there are many shards), then:

1. times ``pipelines.runner.init_ray(workers, None)``: ``ray.init(num_cpus=workers)`` and the warm-up
   of every worker (its imports): the start-up;
2. runs ``pipelines.runner.run_plan(plan, workers)`` and takes ``RunReport.seconds``: the build wall time
   after start-up (every shard as a Ray task, then the manifest). This is the headline figure;
3. runs the same plan again into a second folder on the same workers (steady state).

Why one subprocess per run: every run gets its own Ray cluster sized by the project's own
``init_ray`` and cold worker processes, and nothing (warm workers, object store, driver imports) is
carried from one run to the next, so 1 and 2 workers start from the same state. (``init_ray`` returns
early when Ray is already up, so reusing one process would need ``ray.shutdown`` and would still
carry the driver's warm imports into the second run.)

Noise: the worker counts alternate in ABBA order (1, 2, 2, 1, ...) so that slow drift hits both alike.
A 2-worker speed-up needs both cores free, so before each run the script probes the machine's own
2-process speed-up (a pure-Python spin in 1 and then 2 forked processes, the "CPU ceiling") and waits,
up to ``--quiet-wait`` seconds, until it reaches ``--min-ceiling``; it probes again after the run. A
run is clean when both probes reach the threshold. The speed-up is best 1-worker time / best
2-worker time over the clean runs (over all runs, marked contended, when a worker count has no clean
run); every run is printed.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common import (
    TASKS,
    default_config,
    describe_tree,
    image_paths,
    median,
    print_machine,
    print_table,
    write_tree,
)

from pipelines.build import plan_build
from pipelines.plan import prepare_out_dir

TARGET = 1.7


@dataclass
class Run:
    """What one child process measured, and the CPU ceiling probes around it."""

    workers: int
    init_s: float
    cold_s: float
    warm_s: float
    busy_s: float
    samples: int
    inputs: int
    ceiling_before: float = 0.0
    ceiling_after: float = 0.0

    @property
    def busy(self) -> float:
        """Share of workers x wall that the shards' own build times fill."""
        return self.busy_s / (self.workers * self.cold_s)

    def clean(self, min_ceiling: float) -> bool:
        return min(self.ceiling_before, self.ceiling_after) >= min_ceiling


def _spin(iterations: int = 3_000_000) -> None:
    total = 0
    for i in range(iterations):
        total += i


def cpu_ceiling() -> float:
    """The machine's 2-process speed-up right now (pure-Python spin, fork): what other load leaves us."""
    start = time.perf_counter()
    _spin()
    one = time.perf_counter() - start
    start = time.perf_counter()
    procs = [multiprocessing.get_context("fork").Process(target=_spin) for _ in range(2)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join()
    return 2 * one / (time.perf_counter() - start)


def wait_for_quiet(min_ceiling: float, timeout_s: float) -> float:
    """Probe until the CPU ceiling reaches ``min_ceiling`` or ``timeout_s`` passes; returns the last probe."""
    deadline = time.monotonic() + timeout_s
    while True:
        ceiling = cpu_ceiling()
        if ceiling >= min_ceiling or time.monotonic() >= deadline:
            return ceiling
        time.sleep(2.0)


def shard_seconds(out: Path) -> float:
    """Sum of the shards' own build times, from their stats files."""
    return sum(json.loads(p.read_text())["duration_s"] for p in (out / "parts").glob("*.stats.json"))


def child(task: str, images: Path, workdir: Path, workers: int, samples_per_shard: int) -> dict[str, Any]:
    """One measured run in this (fresh) process; returns the figures as JSON-able data."""
    import ray

    from pipelines.runner import init_ray, run_plan

    def plan_into(out: Path) -> Any:
        plan = plan_build(task, images, out, default_config(task), samples_per_shard=samples_per_shard)
        prepare_out_dir(plan, overwrite=False)
        return plan

    cold_plan, warm_plan = plan_into(workdir / "cold"), plan_into(workdir / "warm")
    init_s = init_ray(workers, None)
    cold = run_plan(cold_plan, workers=workers, show_progress=False)
    warm = run_plan(warm_plan, workers=workers, show_progress=False)
    ray.shutdown()
    totals = cold.manifest["totals"]
    return {
        "workers": workers,
        "init_s": init_s,
        "cold_s": cold.seconds,
        "warm_s": warm.seconds,
        "busy_s": shard_seconds(workdir / "cold"),
        "samples": totals["samples"],
        "inputs": totals["samples"] + totals["rejected"],
    }


def spawn(task: str, images: Path, workdir: Path, workers: int, samples_per_shard: int) -> Run:
    """Run :func:`child` in a new Python process and parse its last output line."""
    cmd = [sys.executable, __file__, "--child", "--task", task, "--images", str(images)]
    cmd += [
        "--workdir",
        str(workdir),
        "--workers",
        str(workers),
        "--samples-per-shard",
        str(samples_per_shard),
    ]
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"child failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return Run(**json.loads(proc.stdout.strip().splitlines()[-1]))


def abba(repeat: int) -> list[int]:
    """Worker counts in ABBA order: 1, 2, 2, 1, 1, 2, ... with ``repeat`` runs of each."""
    pairs = [(1, 2) if i % 2 == 0 else (2, 1) for i in range(repeat)]
    return [w for pair in pairs for w in pair]


def measure_task(task: str, images: Path, workdir: Path, args: argparse.Namespace) -> list[Run]:
    runs = []
    for i, workers in enumerate(abba(args.repeat)):
        before = wait_for_quiet(args.min_ceiling, args.quiet_wait)
        run = spawn(task, images, workdir / f"{task}-{i}-w{workers}", workers, args.samples_per_shard)
        run.ceiling_before, run.ceiling_after = before, cpu_ceiling()
        print(
            f"  {task} run {i + 1}: {workers} worker(s): ray.init {run.init_s:.2f}s, "
            f"build {run.cold_s:.2f}s cold / {run.warm_s:.2f}s warm, busy {run.busy:.0%}, "
            f"CPU ceiling {run.ceiling_before:.2f}x before / {run.ceiling_after:.2f}x after"
            f"{'' if run.clean(args.min_ceiling) else ' (contended)'}",
            flush=True,
        )
        runs.append(run)
    return runs


def usable(runs: list[Run], min_ceiling: float) -> tuple[list[Run], bool]:
    """The clean runs when every worker count has one; otherwise all runs, flagged as contended."""
    clean = [r for r in runs if r.clean(min_ceiling)]
    if {r.workers for r in clean} == {r.workers for r in runs}:
        return clean, False
    return runs, True


def summary_row(task: str, all_runs: list[Run], min_ceiling: float) -> list[str]:
    runs, contended = usable(all_runs, min_ceiling)

    def pick(workers: int, attr: str, how: Callable[[Iterable[float]], float] = min) -> float:
        return how(getattr(r, attr) for r in runs if r.workers == workers)

    inputs = runs[0].inputs
    best = pick(1, "cold_s") / pick(2, "cold_s")
    warm = pick(1, "warm_s") / pick(2, "warm_s")
    count = f"{sum(r.workers == 1 for r in runs)} / {sum(r.workers == 2 for r in runs)}"
    return [
        task,
        str(inputs),
        f"{count}{' (contended)' if contended else ' clean'}",
        f"{pick(1, 'init_s', median):.2f} / {pick(2, 'init_s', median):.2f}",
        f"{pick(1, 'cold_s'):.2f} / {pick(2, 'cold_s'):.2f}",
        f"{inputs / pick(1, 'cold_s'):.0f} / {inputs / pick(2, 'cold_s'):.0f}",
        f"{best:.2f}x",
        f"{warm:.2f}x",
        f">= {TARGET}x",
        "yes" if best >= TARGET else "NO",
        f"{pick(2, 'busy', median):.0%}",
    ]


HEADERS = [
    "task",
    "inputs",
    "runs used (1w / 2w)",
    "ray.init s (1w / 2w)",
    "build s (1w / 2w)",
    "img/s (1w / 2w)",
    "speed-up",
    "warm speed-up",
    "target",
    "met",
    "busy 2w",
]
NOTE = """build = RunReport.seconds after ray.init with cold workers, best of the runs used (ABBA order, each
a fresh process and Ray cluster); speed-up = best 1-worker / best 2-worker build time; warm speed-up = the
same for the second run_plan on the now warm workers; ray.init = median; busy 2w = sum of the shards' own
build times / (2 x wall); runs used = clean runs (CPU ceiling >= {min_ceiling}x before and after)."""


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=Path, help="Image tree (default: write the ImageNet-like one).")
    parser.add_argument("--variant", default="imagenet", choices=["imagenet", "sample"], help="Generated tree.")
    parser.add_argument("--count", type=int, default=960, help="Images of the generated tree (about).")
    parser.add_argument("--tasks", nargs="+", default=["relpos"], choices=TASKS)
    parser.add_argument("--repeat", type=int, default=3, help="Runs of each worker count (ABBA order).")
    parser.add_argument("--samples-per-shard", type=int, default=50)
    parser.add_argument("--min-ceiling", type=float, default=1.7, help="CPU ceiling a clean run needs.")
    parser.add_argument("--quiet-wait", type=float, default=60.0, help="Seconds to wait for it per run.")
    parser.add_argument("--workdir", type=Path, help="Parent of the temporary folder (default: system temp).")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--task", help=argparse.SUPPRESS)
    parser.add_argument("--workers", type=int, help=argparse.SUPPRESS)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.child:
        print(json.dumps(child(args.task, args.images, args.workdir, args.workers, args.samples_per_shard)))
        return
    print_machine()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mtssl-bench-", dir=args.workdir) as tmp:
        workdir = Path(tmp)
        images = args.images.resolve() if args.images else write_tree(workdir, args.variant, args.count).root
        print(f"input: {describe_tree(image_paths(images))}, {args.samples_per_shard} per shard ({images})")
        rows = [summary_row(task, measure_task(task, images, workdir, args), args.min_ceiling) for task in args.tasks]
    print()
    print_table(HEADERS, rows)
    print(NOTE.format(min_ceiling=args.min_ceiling).replace("\n", " "))
    print(f"total {time.perf_counter() - start:.0f}s")


if __name__ == "__main__":
    main()
