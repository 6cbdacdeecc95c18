"""Loader cores per GPU, per task and for all four together, from measured figures.

cores per GPU = the samples/s one GPU trains / the samples/s one loader core makes.

* Loader side: ``bench_loader.py --json`` (``--loader``): each task's loader rate per CPU second of its
  worker, the CPU decode (the default) and ``--jpeg-decode device`` (JPEG bytes handed to nvJPEG).
* GPU side: measured when ``--gpu`` names ``bench_gpu.py --json`` output from a CUDA machine (the
  trainer's own ``<task>_samples_per_s``); otherwise an **estimate** from the paper network's exact
  forward + backward FLOPs per sample of each task (ResNet-v2-101 through block 3 and that task's paper
  head, counted with ``torch.utils.flop_counter`` at the paper-default stored sizes) and an assumed
  sustained rate, ``--gpu-tflops`` (default 100 for an H100 in bf16: NVIDIA's DeepLearningExamples
  report about 4,000 ResNet-50 training images/s per H100 with mixed precision, ~25 GFLOP each).

One task alone: a GPU trains ``tflops / flops(task)`` samples/s of it. All four: a step trains one
sample of every task per bundle, ``tflops / sum(flops)`` bundles/s, and a core spends
``sum(1 / loader rate)`` seconds per bundle. Goal: at most 2 cores per GPU for all four together.

usage: .venv/bin/python benchmarks/bench_cores_per_gpu.py --loader docs/benchmarks/loader.json [--json OUT]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from bench_train_wait import paper_bundle
from common import print_machine, print_table, write_json

from mtssl.model import MultiTaskNet, NetworkConfig
from mtssl.train.step import total_loss

TASKS = ("relpos", "color", "exemplar", "motion")
GOAL = 2.0


def flops_per_sample(task: str) -> float:
    """Forward + backward FLOPs of the paper trunk and ``task``'s paper head, per stored sample."""
    from torch.utils.flop_counter import FlopCounterMode

    net = MultiTaskNet(NetworkConfig(tasks=(task,), depth=101, width=64))
    batch = 2  # the triplet loss needs two images
    counter = FlopCounterMode(display=False)
    with counter:
        loss = total_loss(net({task: paper_bundle(batch)[task]}, torch.Generator().manual_seed(0))[0])
        loss.backward()
    return counter.get_total_flops() / batch


def gpu_rates(args: argparse.Namespace, flops: dict[str, float]) -> tuple[dict[str, float], str]:
    """Samples/s per task one GPU trains, and how the figure was obtained."""
    if args.gpu:
        record = json.loads(args.gpu.read_text())
        rates = record["compiled"]["samples_per_s"] if "compiled" in record else record["samples_per_s"]
        return {task: float(rates[task]) for task in TASKS}, f"measured ({args.gpu})"
    return {t: args.gpu_tflops * 1e12 / f for t, f in flops.items()}, f"ESTIMATE at {args.gpu_tflops:.0f} TFLOP/s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--loader", type=Path, required=True, help="bench_loader.py --json output")
    parser.add_argument("--gpu", type=Path, default=None, help="bench_gpu.py --json output (measured GPU)")
    parser.add_argument("--gpu-tflops", type=float, default=100.0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    print_machine()
    loader = json.loads(args.loader.read_text())["tasks"]
    flops = {task: flops_per_sample(task) for task in TASKS}
    gpu, how = gpu_rates(args, flops)
    modes = {"cpu decode": "loader_cpu_per_s", "JPEG on GPU": "loader_jpeg_bytes_cpu_per_s"}
    rows, figures = [], {"gpu": how, "goal": GOAL, "tasks": {}, "all_four": {}}
    for task in TASKS:
        cores = {mode: gpu[task] / loader[task][key] for mode, key in modes.items()}
        figures["tasks"][task] = {
            "gflop_per_sample": round(flops[task] / 1e9, 1),
            "gpu_samples_per_s": round(gpu[task]),
        }
        figures["tasks"][task] |= {mode: round(c, 2) for mode, c in cores.items()}
        rows.append([task, f"{flops[task] / 1e9:.1f}", f"{gpu[task]:.0f}", *(f"{c:.2f}" for c in cores.values())])
    bundles = 1 / sum(1 / gpu[task] for task in TASKS)  # one sample of every task per bundle
    for mode, key in modes.items():
        figures["all_four"][mode] = round(bundles * sum(1 / loader[t][key] for t in TASKS), 2)
    figures["all_four"]["gpu_bundles_per_s"] = round(bundles)
    rows.append(["all four", f"{sum(flops.values()) / 1e9:.1f}", f"{bundles:.0f} bundles",
                 *(f"{figures['all_four'][m]:.2f}" for m in modes)])  # fmt: skip
    print(f"\nGPU: {how}; loader: {args.loader}\n")
    print_table(["task", "GFLOP/sample", "GPU samples/s", *(f"cores ({m})" for m in modes)], rows)
    met = figures["all_four"]["cpu decode"] <= GOAL
    print(f"\nall four tasks with the CPU decode: {figures['all_four']['cpu decode']:.2f} cores per GPU "
          f"(goal <= {GOAL:.0f}: {'met' if met else 'NOT met'})")  # fmt: skip
    if args.json:
        write_json(args.json, {"benchmark": "cores_per_gpu", **figures})


if __name__ == "__main__":
    main()
