"""Frozen features of a trunk, per source, pooled to a fixed size, and cached on disk.

Sources (a documented subset, the same for a trained trunk and its random-init baselines):

- ``block1``, ``block2``: the raw outputs of blocks 1 and 2;
- ``unitK``: the raw output of block-3 unit K (1-based): every unit when there are at most 6, else 6
  evenly spaced ones, the last included (the paper's trunk has 23);
- ``lasso_<task>``: each pretext task's lasso mix, i.e. exactly what that task's head reads;
- the per-unit *candidates* (each unit after its lasso normalisation, as the heads see them), kept apart
  for the evaluation lasso row (``mtssl.eval.classifiers.learn_eval_lasso``).

Every source is average-pooled to a g x g grid with ``g = round(sqrt(dims / channels))`` (at least 1), so
shallow and deep layers get feature vectors of about the same length (Goyal et al. 2019 resize every
layer to ~9k dims the same way).

Random-init baselines (``random_trunk``) have the trained trunk's exact shape. Their normalisation
statistics are re-estimated on the probe's train images (an average over one pass, weighted by batch size),
so the baseline is a random trunk whose BN has seen the data, not one whose activations explode with depth:
the strongest cheap baseline, which is the honest one to beat.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mtssl.model.lasso import LassoCombiner
from mtssl.model.loading import LoadedTrunk, trunk_config
from mtssl.model.network import NetworkConfig, autocast
from mtssl.model.trunk import ResNetV2Trunk
from mtssl.train.distributed import resolve_device

FEATURE_VERSION = 1  # bump when what a source means changes: old cache entries are then ignored
MAX_UNITS = 6


@dataclass
class FeatureSet:
    """Pooled features per source (N, D) and the pooled per-unit lasso candidates (units, N, D) or None."""

    sources: dict[str, np.ndarray]
    candidates: np.ndarray | None


def unit_subset(num_units: int, most: int = MAX_UNITS) -> list[int]:
    """0-based block-3 units probed: all of them, or ``most`` evenly spaced ones ending at the last."""
    if num_units <= most:
        return list(range(num_units))
    return sorted({int(round(i)) for i in np.linspace(0, num_units - 1, most)})


def pool_grid(channels: int, dims: int, spatial: int) -> int:
    return max(1, min(spatial, round(math.sqrt(dims / channels))))


def pooled(x: torch.Tensor, dims: int) -> torch.Tensor:
    """Average-pool (N,C,H,W) to a g x g grid of about ``dims`` values per sample, flattened, fp32."""
    grid = pool_grid(x.shape[1], dims, min(x.shape[-2:]))
    return F.adaptive_avg_pool2d(x.float(), grid).flatten(1)


def _batches(images: np.ndarray, size: int, device: torch.device):
    for start in range(0, len(images), size):
        chunk = torch.from_numpy(images[start : start + size]).permute(0, 3, 1, 2).contiguous()
        yield chunk.to(device, non_blocking=True)


@torch.no_grad()
def extract_features(
    loaded: LoadedTrunk, images: np.ndarray, dims: int, batch_size: int = 64, device: str = "cpu"
) -> FeatureSet:
    """Every source of ``loaded`` on uint8 RGB images (N,H,W,3); the trunk stays frozen (eval mode)."""
    dev = resolve_device(device)
    loaded.to(dev)
    trunk, lasso = loaded.trunk.eval(), loaded.lasso.eval()
    probed = unit_subset(trunk.num_units)
    parts: dict[str, list[torch.Tensor]] = {}
    candidates: list[list[torch.Tensor]] = [[] for _ in range(trunk.num_units)] if lasso.enabled else []
    for rgb in _batches(images, batch_size, dev):
        with autocast(dev, loaded.network.amp):
            block1 = trunk.block1(trunk.stem(loaded.prepare(rgb)))
            block2 = trunk.block2(block1)
            units, x = [], block2
            for unit in trunk.block3:
                x = unit(x)
                units.append(x)
            outputs = {"block1": block1, "block2": block2}
            outputs |= {f"unit{m + 1}": units[m] for m in probed}
            outputs |= {f"lasso_{row}": lasso(units, row) for row in loaded.rows}
        for name, value in outputs.items():
            parts.setdefault(name, []).append(pooled(value, dims).cpu())
        for m, store in enumerate(candidates):
            store.append(pooled(lasso.candidate(units[m], m), dims).cpu())
    sources = {name: torch.cat(chunks).numpy() for name, chunks in parts.items()}
    stacked = np.stack([torch.cat(c).numpy() for c in candidates]) if candidates else None
    return FeatureSet(sources, stacked)


# ---- random-init baselines ---------------------------------------------------------------------------


def random_trunk(network: NetworkConfig, rows: list[str], seed: int) -> LoadedTrunk:
    """A randomly initialised trunk and lasso of the given shape (seeded), naive lasso rows."""
    torch.manual_seed(seed)
    trunk = ResNetV2Trunk(trunk_config(network))
    lasso = LassoCombiner(trunk.num_units, trunk.out_channels, rows, network.lasso)
    return LoadedTrunk(trunk, lasso, network, step=0)


@torch.no_grad()
def recalibrate_norms(loaded: LoadedTrunk, images: np.ndarray, batch_size: int = 64, device: str = "cpu") -> None:
    """Re-estimate every BatchNorm's running statistics on ``images`` (one pass, weighted by batch size)."""
    dev = resolve_device(device)
    loaded.to(dev)
    norms = [m for m in (*loaded.trunk.modules(), *loaded.lasso.modules()) if isinstance(m, nn.BatchNorm2d)]
    for norm in norms:
        norm.reset_running_stats()
        norm.train()
    seen = 0
    for rgb in _batches(images, batch_size, dev):
        seen += len(rgb)
        for norm in norms:  # a running average weighted by batch size: a short last batch counts for its images
            norm.momentum = len(rgb) / seen
        units = loaded.trunk(loaded.prepare(rgb))
        if loaded.lasso.enabled:
            for m, unit in enumerate(units):
                loaded.lasso.candidate(unit, m)
        else:
            loaded.lasso.candidate(units[-1], -1)
    for norm in norms:
        norm.eval()


# ---- cache ---------------------------------------------------------------------------------------------


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mtssl" / "features"


def cache_key(*parts: object) -> str:
    text = "|".join(str(p) for p in (FEATURE_VERSION, *parts))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def cached(folder: Path, key: str, compute: Callable[[], dict[str, FeatureSet]]) -> tuple[dict[str, FeatureSet], bool]:
    """``compute()`` once per key (split name -> features), stored as ``<folder>/<key>.npz``: plain arrays,
    no pickle. Returns (features, whether they came from the cache)."""
    path = Path(folder) / f"{key}.npz"
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as data:
                return _unpack({name: data[name] for name in data.files}), True
        except Exception:  # a damaged entry (truncated, empty, not a zip, ...): recompute it
            path.unlink(missing_ok=True)
    features = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
    np.savez(tmp, **_pack(features))
    os.replace(tmp, path)
    return features, False


def _pack(features: dict[str, FeatureSet]) -> dict[str, np.ndarray]:
    arrays = {}
    for split, fs in features.items():
        arrays |= {f"{split}:src:{name}": value for name, value in fs.sources.items()}
        if fs.candidates is not None:
            arrays[f"{split}:candidates"] = fs.candidates
    return arrays


def _unpack(arrays: dict[str, np.ndarray]) -> dict[str, FeatureSet]:
    out: dict[str, FeatureSet] = {}
    for name, value in arrays.items():
        split, _, rest = name.partition(":")
        fs = out.setdefault(split, FeatureSet({}, None))
        if rest == "candidates":
            fs.candidates = value
        else:
            fs.sources[rest.removeprefix("src:")] = value
    return out
