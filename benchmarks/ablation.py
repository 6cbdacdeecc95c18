"""The paper's ablation at small scale, every run on the same shards (the reuse mtssl is for).

Runs, each with ``--preset cpu`` (and ``--steps`` when given), for every seed:

- each task alone: ``relpos``, ``color``, ``exemplar``, ``motion``;
- ``all-lasso``: all four tasks, lasso on (the default);
- ``all-naive``: all four, lasso off (every head reads the last block-3 unit);
- ``all-native``: all four, native inputs (no harmonization: RGB where the task's paper used it);
- ``rotation`` alone and ``all-five`` (the four with rotation, lasso on), where the shards hold a rotation
  set (``mtssl-data build rotation``); the paper's rows always name their four tasks, so adding the set
  changes none of them;
- ``jigsaw`` alone, where the shards hold a jigsaw set (``mtssl-data build jigsaw``), and ``all-six`` (the
  five with jigsaw, lasso on), where they hold both;

then probes every trunk (``mtssl-eval probe``, beside random-init trunks) on each labelled folder given,
writes the report with the comparison bar chart, and prints a Markdown table of the best probe accuracy
per run (mean over seeds) and its margin over the best random-init source. Finished runs and cached
features are reused, so an interrupted grid continues where it stopped.

    .venv/bin/python benchmarks/ablation.py --shards /work/exp/fshards --out runs/ablation \\
        --probe flowers5=../shared/data/flowers5 --seeds 0 1

Options after ``--`` go to every ``mtssl-train`` run (``-- --lr 1e-3`` reruns the grid at another learning
rate); give such a grid its own ``--out``, since finished runs are reused by folder.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

PAPER_TASKS = ["--tasks", "relpos,color,exemplar,motion"]
GRID: dict[str, list[str]] = {
    "relpos": ["--tasks", "relpos"],
    "color": ["--tasks", "color"],
    "exemplar": ["--tasks", "exemplar"],
    "motion": ["--tasks", "motion"],
    "all-lasso": PAPER_TASKS,
    "all-naive": [*PAPER_TASKS, "--no-lasso"],
    "all-native": [*PAPER_TASKS, "--input-mode", "native"],
    "rotation": ["--tasks", "rotation"],
    "all-five": ["--tasks", "relpos,color,exemplar,motion,rotation"],
    "jigsaw": ["--tasks", "jigsaw"],
    "all-six": ["--tasks", "relpos,color,exemplar,motion,rotation,jigsaw"],
}
NEEDS = {"rotation": ("rotation", "all-five", "all-six"), "jigsaw": ("jigsaw", "all-six")}  # rows -> the set they need


def bin_of(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


def train(shards: Path, run: Path, extra: list[str], seed: int, steps: int | None, common: list[str]) -> None:
    if (run / "trunk.pt").is_file() and any('"event": "end"' in line for line in (run / "log.jsonl").open()):
        print(f"reusing {run}", flush=True)
        return
    resume = ["--resume"] if any(run.glob("ckpt-*.pt")) else []
    command = [bin_of("mtssl-train"), "--shards", str(shards), "--out", str(run), "--preset", "cpu"]
    command += [*extra, *common, "--seed", str(seed), *resume] + (["--steps", str(steps)] if steps else [])
    print(" ".join(command), flush=True)
    subprocess.run(command, check=True)


def probe(run: Path, name: str, folder: Path, split_seed: int) -> dict:
    out = run / f"probe-{name}.json"
    if not out.is_file():
        command = [bin_of("mtssl-eval"), "probe", "--run", str(run), "--images", str(folder)]
        subprocess.run([*command, "--split", "0.5", "--seed", str(split_seed), "--json", str(out)], check=True)
    return json.loads(out.read_text())


def table(results: dict[str, dict[str, list[dict]]], datasets: list[str]) -> str:
    head = "| run | " + " | ".join(f"{d} best | {d} margin" for d in datasets) + " |"
    rows = [head, "|" + "---|" * (1 + 2 * len(datasets))]
    for name, per_data in results.items():
        cells = []
        for d in datasets:
            best = [r["best"]["acc"] for r in per_data[d]]
            margin = [r["best"]["margin"] for r in per_data[d]]
            spread = f" ± {statistics.pstdev(margin):.3f}" if len(margin) > 1 else ""
            cells += [f"{statistics.mean(best):.3f}", f"{statistics.mean(margin):+.3f}{spread}"]
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shards", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=Path("runs/ablation"))
    parser.add_argument("--probe", action="append", required=True, help="NAME=FOLDER of a labelled folder")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--steps", type=int, default=None, help="override the preset's 1800 steps")
    parser.add_argument("--only", nargs="+", choices=list(GRID), default=None, help="a subset of the grid")
    parser.add_argument("train_args", nargs="*", help="after --: options for every mtssl-train run")
    args = parser.parse_args()
    if args.only is None:
        lacking = [task for task in NEEDS if not (args.shards / task / "manifest.json").is_file()]
        args.only = [name for name in GRID if not any(name in NEEDS[task] for task in lacking)]
    probes = dict(item.split("=", 1) for item in args.probe)
    results: dict[str, dict[str, list[dict]]] = {}
    runs = []
    for name in args.only:
        for seed in args.seeds:
            run = args.out / f"{name}-s{seed}"
            train(args.shards, run, GRID[name], seed, args.steps, args.train_args)
            runs.append(run)
            for data, folder in probes.items():
                results.setdefault(name, {}).setdefault(data, []).append(probe(run, data, Path(folder), 0))
    subprocess.run([bin_of("mtssl-report"), *map(str, runs), "--out", str(args.out / "report")], check=True)
    print(table(results, list(probes)))


if __name__ == "__main__":
    main()
