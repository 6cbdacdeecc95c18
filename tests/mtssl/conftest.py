"""Consumer-test fixtures: tiny shard sets of every task (``shardkit``, built once per session), a tiny-run
config, tiny networks and synthetic batches in the stored sample layout (``mtssl/inputs.py``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from mtssl.contract import ab_bins
from mtssl.model import MultiTaskNet, NetworkConfig
from mtssl.tasks import TASKS, ColorHeadConfig, ExemplarHeadConfig, MotionHeadConfig, RelposHeadConfig
from mtssl.tasks.rotation import RotationHeadConfig
from mtssl.train.config import TrainConfig

from .shardkit import TINY_TASK_OPTIONS, build_sets

TINY_TASKS = {
    "relpos": RelposHeadConfig(patch_channels=8, patch_dim=32, pair_dims=(32,)),
    "color": ColorHeadConfig(hidden=32),
    "exemplar": ExemplarHeadConfig(hidden=32, dim=16),
    "motion": MotionHeadConfig(hidden=16),
    "rotation": RotationHeadConfig(hidden=16),
}


def build_tiny_net(tasks: tuple[str, ...] = tuple(TASKS), **overrides) -> MultiTaskNet:
    config = NetworkConfig(**{"tasks": tasks, "depth": 18, "width": 8, **overrides})
    return MultiTaskNet(config, TINY_TASKS)


def nearest_bins(ab: np.ndarray) -> np.ndarray:
    """Brute-force nearest of the 313 bins for int ab (N,2,h,w) -> (N,h,w)."""
    points = ab.transpose(0, 2, 3, 1).reshape(-1, 1, 2).astype(np.int64)
    dist = ((points - ab_bins()[None]) ** 2).sum(-1)
    return dist.argmin(1).reshape(ab.shape[0], *ab.shape[2:])


def build_batch(task: str, n: int = 2, size: int = 32, seed: int = 0) -> dict[str, torch.Tensor]:
    """A batch of random stored-format tensors for ``task`` (patch/view side ``size``)."""
    g = torch.Generator().manual_seed(seed)

    def image(channels: int, h: int, w: int) -> torch.Tensor:
        return torch.randint(0, 256, (n, channels, h, w), dtype=torch.uint8, generator=g)

    if task == "relpos":
        return {"rgb": image(3, 3 * size, 3 * size), "l": image(1, 3 * size, 3 * size)}
    if task == "exemplar":
        return {"rgb": image(3, size, 2 * size), "l": image(1, size, 2 * size)}
    if task == "rotation":
        return {"rgb": image(3, size, size)}
    if task == "motion":
        mask = torch.zeros(n, 1, size, size, dtype=torch.uint8)
        for i in range(n):  # blocky foreground, a different quadrant per image
            r, c = divmod(i % 4, 2)
            mask[i, :, r * size // 2 : (r + 1) * size // 2, c * size // 2 : (c + 1) * size // 2] = 255
        return {"rgb": image(3, size, size), "l": image(1, size, size), "mask": mask}
    if task == "color":
        h = size // 4
        ab = torch.randint(-60, 61, (n, 2, h, h), dtype=torch.int8, generator=g)
        bins = torch.from_numpy(nearest_bins(ab.numpy()))
        return {
            "l": image(1, size, size),
            "ab": ab,
            "bins": bins,
            "grayscale": torch.zeros(n, dtype=torch.bool),
        }
    raise KeyError(task)


@pytest.fixture
def tiny_net() -> Callable[..., MultiTaskNet]:
    """Factory: ``tiny_net(tasks, **NetworkConfig overrides)``, depth 18 at width 8 with tiny heads."""
    return build_tiny_net


@pytest.fixture
def make_batch() -> Callable[..., dict[str, torch.Tensor]]:
    """Factory: ``make_batch(task, n, size, seed)``, random stored-format tensors."""
    return build_batch


@pytest.fixture(scope="session")
def shard_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``shards/`` with one tiny set per task (8 images of 4 photos, 3 short videos), built once per session."""
    return build_sets(tmp_path_factory.mktemp("train-data"))


@pytest.fixture
def tiny_config(shard_root: Path, tmp_path: Path):
    """Factory: a TrainConfig for a tiny CPU run in a fresh folder; keyword arguments override."""

    def make(**overrides) -> TrainConfig:
        base = TrainConfig(
            shards=str(shard_root),
            out=str(tmp_path / "run"),
            depth=18,
            width=8,
            batch_size=4,
            workers=0,
            shuffle_buffer=16,
            steps=6,
            warmup_steps=0,
            save_every=3,
            log_every=1,
            device="cpu",
            progress=False,
            task_options=TINY_TASK_OPTIONS,
        )
        return replace(base, **overrides)

    return make


@pytest.fixture(autouse=True)
def _seeded_one_thread(one_thread):
    """Seed torch, and one thread (one torch, one BLAS) for every consumer test: tiny tensors gain nothing
    from more threads, and lose a lot on shared cores."""
    torch.manual_seed(0)
    yield
