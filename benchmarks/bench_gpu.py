"""GPU readiness in one short run: the paper network trained on CUDA from the sample's shards.

    .venv/bin/python benchmarks/bench_gpu.py [--steps 200] [--json OUT]          # on a CUDA machine
    .venv/bin/python benchmarks/bench_gpu.py --device cpu --depth 18 --width 8 --steps 4 --workers 1 2
                                                                                  # the same code on CPU

Builds the embedded sample's four shard sets (``bench_train_wait.build_sample``), then trains
``mtssl.train.loop.train`` -- by default the paper trunk (ResNet-v2-101 through block 3, all four tasks,
bf16 autocast and channels_last on CUDA) -- for ``--steps`` steps:

1. without and with ``--compile``, 2 loader workers: images/s per task (the trainer's own
   ``<task>_samples_per_s``), the steady-state step time, peak GPU memory, and whether every task's loss
   fell from the first logged window to the last;
2. the data-wait share (``data_wait`` in ``log.jsonl``) with 1, 2 and 4 loader workers, uncompiled.

The first logged window (start-up, compilation, shuffle buffers filling) is left out of the rates.
Under 5 minutes on one H100/H200 at the defaults; every figure is printed and, with ``--json``, written.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from bench_train_wait import build_sample  # noqa: E402

from mtssl.train.config import TrainConfig  # noqa: E402
from mtssl.train.logging import LOG_FILE, read_log  # noqa: E402
from mtssl.train.loop import train  # noqa: E402

TASKS = ("relpos", "color", "exemplar", "motion")


def run(shards: Path, out: Path, args: argparse.Namespace, workers: int, compile_: bool) -> dict:
    cfg = TrainConfig(
        shards=str(shards),
        out=str(out),
        depth=args.depth,
        width=args.width,
        batch_size=args.batch,
        workers=workers,
        steps=args.steps,
        warmup_steps=min(10, args.steps // 4),
        save_every=args.steps,
        log_every=max(args.steps // 10, 1),
        val_batches=0,
        device=args.device,
        compile=compile_,
        progress=False,
    )
    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    train(cfg)
    wall = time.perf_counter() - start
    records = [r for r in read_log(out / LOG_FILE) if "loss" in r]
    steady = records[1:] or records
    return {
        "workers": workers,
        "compile": compile_,
        "wall_s": round(wall, 1),
        "step_s": statistics.median(r["step_s"] for r in steady),
        "data_wait": statistics.mean(r["data_wait"] for r in steady),
        "samples_per_s": {t: statistics.median(r[f"{t}_samples_per_s"] for r in steady) for t in TASKS},
        "losses_fell": {t: records[-1][f"{t}_loss"] < records[0][f"{t}_loss"] for t in TASKS},
        "peak_gpu_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if args.device == "cuda" else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch", type=int, default=32, help="per task")
    parser.add_argument("--depth", type=int, default=101)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4], help="loader workers to compare")
    parser.add_argument("--no-compile", dest="compile", action="store_false", help="skip the --compile run")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("no CUDA device here: run with --device cpu (and a tiny --depth/--width) to check the script")
    results: dict = {"device": torch.cuda.get_device_name() if args.device == "cuda" else "cpu", "runs": []}
    with tempfile.TemporaryDirectory() as tmp:
        shards = build_sample(Path(tmp))
        plans = [(2, False)] + ([(2, True)] if args.compile else [])
        plans += [(w, False) for w in args.workers if w != 2]
        for k, (workers, compile_) in enumerate(plans):
            results["runs"].append(run(shards, Path(tmp) / f"run{k}", args, workers, compile_))
            r = results["runs"][-1]
            rates = ", ".join(f"{t} {v:.0f}" for t, v in r["samples_per_s"].items())
            print(
                f"workers {workers} compile {compile_!s:5}: step {r['step_s']:.3f} s, data wait {r['data_wait']:.1%}, "
                f"images/s {rates}; losses fell {r['losses_fell']}; peak GPU {r['peak_gpu_gib']} GiB",
                flush=True,
            )
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
