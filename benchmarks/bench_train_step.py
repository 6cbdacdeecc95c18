"""CPU training step at the demo's size: the paper's head widths against heads that follow the trunk.

Three networks are built in this process with the same trunk (ResNet-v2-18, width 16, harmonized input,
the four tasks) and timed on the same synthetic batches of the stored shapes (relpos 3x3 grids of 96-px
patches, colour 256-px L with 64-px targets, exemplar 4 views of 96 px, motion 256-px frames), batch 8 per
task, interleaved round by round so that machine noise hits all alike:

- "paper heads": every head at the paper's width (what every run had before heads followed the trunk);
- "trunk-following heads": the default heads now;
- "+ cpu preset crops": those heads with the training crops of ``--preset cpu`` (relpos 80, colour 176,
  exemplar 80 px; motion frames cropped to 160 px, as the loader does with ``--task-opt motion.crop=160``).

Prints the median step time of each, the ratios to the first, parameter counts and checkpoint sizes.

    .venv/bin/python benchmarks/bench_train_step.py [--rounds 5] [--batch 8] [--depth 18] [--width 16]
"""

from __future__ import annotations

import argparse
import io
import statistics
import time

import torch

from mtssl.contract import ab_bins
from mtssl.model import MultiTaskNet, NetworkConfig
from mtssl.tasks import ColorHeadConfig, ExemplarHeadConfig, MotionHeadConfig, RelposHeadConfig
from mtssl.train.step import total_loss

PAPER_HEADS = {  # the widths every head had before they followed the trunk (src: method.md)
    "relpos": RelposHeadConfig(patch_channels=256, patch_dim=4096, pair_dims=(4096, 4096)),
    "color": ColorHeadConfig(hidden=256),
    "exemplar": ExemplarHeadConfig(hidden=4096, dim=1024),
    "motion": MotionHeadConfig(hidden=256),
}


def synthetic_batches(batch: int, generator: torch.Generator) -> dict[str, dict[str, torch.Tensor]]:
    def u8(*shape: int) -> torch.Tensor:
        return torch.randint(0, 256, shape, dtype=torch.uint8, generator=generator)

    bins = torch.randint(0, len(ab_bins()), (batch, 64, 64), generator=generator)
    ab = torch.from_numpy(ab_bins()).to(torch.int8)[bins].permute(0, 3, 1, 2).contiguous()
    return {
        "relpos": {"rgb": u8(batch, 3, 288, 288)},
        "color": {"l": u8(batch, 1, 256, 256), "bins": bins, "ab": ab},
        "exemplar": {"rgb": u8(batch, 3, 96, 384)},
        "motion": {"rgb": u8(batch, 3, 256, 256), "mask": u8(batch, 1, 256, 256)},
    }


def step_time(net: MultiTaskNet, optimizer: torch.optim.Optimizer, batches: dict, generator: torch.Generator) -> float:
    tic = time.perf_counter()
    loss = total_loss(net(batches, generator)[0])
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return time.perf_counter() - tic


def checkpoint_mb(net: MultiTaskNet, optimizer: torch.optim.Optimizer) -> float:
    buffer = io.BytesIO()
    torch.save({"model": net.state_dict(), "optimizer": optimizer.state_dict()}, buffer)
    return buffer.tell() / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--depth", type=int, default=18)
    parser.add_argument("--width", type=int, default=16)
    args = parser.parse_args()
    torch.manual_seed(0)
    config = NetworkConfig(depth=args.depth, width=args.width)
    crops = {
        "relpos": RelposHeadConfig(crop=80, flip=True),
        "color": ColorHeadConfig(crop=176),
        "exemplar": ExemplarHeadConfig(crop=80),
        "motion": MotionHeadConfig(),
    }
    nets = {
        "paper heads": MultiTaskNet(config, PAPER_HEADS),
        "trunk-following heads": MultiTaskNet(config),
        "+ cpu preset crops": MultiTaskNet(config, crops),
    }
    optimizers = {name: torch.optim.RMSprop(net.parameters(), lr=1e-4) for name, net in nets.items()}
    generator = torch.Generator().manual_seed(0)
    full = synthetic_batches(args.batch, generator)
    cropped = {**full, "motion": {key: value[..., :160, :160] for key, value in full["motion"].items()}}
    inputs = {name: cropped if name.startswith("+") else full for name in nets}
    times: dict[str, list[float]] = {name: [] for name in nets}
    for name, net in nets.items():  # warm-up: allocator, first-call costs
        step_time(net, optimizers[name], inputs[name], generator)
    for _ in range(args.rounds):
        for name, net in nets.items():
            times[name].append(step_time(net, optimizers[name], inputs[name], generator))
    print(f"ResNet-v2-{args.depth} width {args.width}, batch {args.batch} per task, 4 tasks, {args.rounds} rounds")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    for name, net in nets.items():
        params = sum(p.numel() for p in net.parameters()) / 1e6
        median = statistics.median(times[name])
        mb = checkpoint_mb(net, optimizers[name])
        ratio = statistics.median(times["paper heads"]) / median
        print(f"{name:22s} step {median:6.3f} s (median, {ratio:4.2f}x)  {params:6.2f} M params  ckpt {mb:6.1f} MB")


if __name__ == "__main__":
    main()
