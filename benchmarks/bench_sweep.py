"""What ``mtssl-sweep`` costs over running the same runs by hand, and runs per hour at --parallel 1 and 2.

Three passes over the same N short runs (``--preset cpu`` at ``--steps``, one task, seeds 0..N-1, no probe),
each into a fresh folder, in this one command so the machine's noise hits all three alike:

1. baseline: ``mtssl-train --config`` for each run, one after the other (what a shell loop does);
2. ``mtssl-sweep --parallel 1``: the same runs as Ray tasks, one at a time (Ray start-up, scheduling);
3. ``mtssl-sweep --parallel 2``: two at a time, each with half the CPUs.

Prints the wall time of each pass, the sweep's overhead over the baseline (ratio), and runs per hour.

    .venv/bin/python benchmarks/bench_sweep.py --shards /work/exp/fshards --runs 4 --steps 60
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml


def write_spec(folder: Path, shards: str, runs: int, steps: int, task: str) -> Path:
    spec = {
        "shards": shards,
        "common": {"preset": "cpu", "tasks": task, "steps": steps, "save_every": steps, "val_every": steps},
        "runs": {"r": {"seeds": list(range(runs))}},
    }
    path = folder / "sweep.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def sweep_command(spec: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "mtssl.sweep.cli", str(spec), "--out", str(out), *extra]


def timed(command: list[str], env: dict[str, str]) -> float:
    tic = time.perf_counter()
    subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - tic


def baseline(spec: Path, out: Path, env: dict[str, str]) -> float:
    """The sweep's own config files (a --dry-run writes them), trained one after the other by hand."""
    subprocess.run(sweep_command(spec, out, "--dry-run"), check=True, env=env, stdout=subprocess.DEVNULL)
    tic = time.perf_counter()
    for config in sorted((out / "configs").glob("*.yaml")):
        command = [sys.executable, "-m", "mtssl.train.cli", "--config", str(config), "--no-progress"]
        subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - tic


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shards", required=True)
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--task", default="relpos")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    env = {**os.environ, "RAY_ADDRESS": ""}
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as tmp:
        root = Path(tmp)
        spec = write_spec(root, args.shards, args.runs, args.steps, args.task)
        seconds = {"baseline": baseline(spec, root / "baseline", env)}
        seconds["parallel-1"] = timed(sweep_command(spec, root / "p1", "--parallel", "1"), env)
        seconds["parallel-2"] = timed(sweep_command(spec, root / "p2", "--parallel", "2"), env)
    print(f"{args.runs} runs of {args.task}, --preset cpu --steps {args.steps}, {os.cpu_count()} CPUs")
    for name, value in seconds.items():
        print(f"  {name:11s} {value:7.1f} s   {3600 * args.runs / value:6.1f} runs/hour")
    print(f"  sweep overhead at --parallel 1: {seconds['parallel-1'] / seconds['baseline']:.3f}x the baseline "
          f"(+{seconds['parallel-1'] - seconds['baseline']:.1f} s)")  # fmt: skip
    print(
        f"  --parallel 2 against --parallel 1: {seconds['parallel-1'] / seconds['parallel-2']:.3f}x the runs per hour"
    )
    if args.json:
        args.json.write_text(
            json.dumps({"runs": args.runs, "steps": args.steps, "task": args.task, "seconds": seconds})
        )


if __name__ == "__main__":
    main()
