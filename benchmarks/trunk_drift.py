"""How far training moved a trunk from its initial weights, layer by layer (docs/results.md, "The learning rate").

For each run: the trunk of ``RUN/trunk.pt`` against the trunk the trainer built before step 0 (the same
shape, built right after seeding with the run's ``--seed``, as ``mtssl.train.loop`` does). Per convolution:
the norm ratio (trained / initial) and the cosine similarity of the flattened weights; for the stem's filters
the effective rank (exp of the entropy of the normalised squared singular values) and the share of their
energy in the mean intensity (the DC component).

    .venv/bin/python benchmarks/trunk_drift.py RUN [RUN ...] [--all]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import torch.nn.functional as F

from mtssl.model.loading import load_trunk, trunk_config
from mtssl.model.trunk import ResNetV2Trunk, TrunkConfig
from mtssl.train.loop import seed_everything


def initial_trunk(run: Path, config: TrunkConfig) -> ResNetV2Trunk:
    seed = json.loads((run / "config.json").read_text())["seed"] if (run / "config.json").exists() else 0
    seed_everything(seed)
    return ResNetV2Trunk(config)


def effective_rank(weight: torch.Tensor) -> float:
    s = torch.linalg.svdvals(weight.flatten(1).double())
    p = s**2 / (s**2).sum()
    return float(torch.exp(-(p * torch.log(p.clamp_min(1e-300))).sum()))


def dc_share(weight: torch.Tensor) -> float:
    """Mean over filters of (filter mean)^2 * size / ||filter||^2: 1 for a box filter, ~1/size for noise."""
    flat = weight.flatten(1).double()
    return float((flat.mean(1) ** 2 * flat.shape[1] / (flat**2).sum(1)).mean())


def report(run: Path, every_layer: bool) -> None:
    loaded = load_trunk(run)
    trained = loaded.trunk
    init = initial_trunk(run, trunk_config(loaded.network))
    start = dict(init.named_parameters())
    print(f"== {run} (step {loaded.step})")
    cosines = {}
    for name, weight in trained.named_parameters():
        if weight.dim() != 4:
            continue
        w, w0 = weight.detach(), start[name].detach()
        cos = float(F.cosine_similarity(w.flatten(), w0.flatten(), dim=0))
        cosines[name] = cos
        if every_layer:
            print(f"  {name.removesuffix('.weight'):22s} norm {w.norm() / w0.norm():.2f}  cos {cos:.2f}")
    for stage in ("block1", "block2", "block3"):
        values = [c for n, c in cosines.items() if n.startswith(stage)]
        print(f"  {stage}: cosine to init {min(values):.2f}-{max(values):.2f} over {len(values)} convolutions")
    stem, stem0 = trained.conv1.weight.detach(), init.conv1.weight.detach()
    print(
        f"  stem {tuple(stem.shape)}: cosine {cosines['conv1.weight']:.2f}; "
        f"effective rank {effective_rank(stem0):.1f} -> {effective_rank(stem):.1f}; "
        f"DC share {dc_share(stem0):.2f} -> {dc_share(stem):.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders (RUN/trunk.pt, RUN/config.json)")
    parser.add_argument("--all", action="store_true", help="print every convolution, not only the summary")
    args = parser.parse_args()
    for run in args.runs:
        report(run, args.all)


if __name__ == "__main__":
    main()
