"""Consumer-test fixtures: tiny shard sets of every task (``shardkit``, built once per session), a tiny-run
config, tiny networks and synthetic batches in the stored sample layout (``mtssl/inputs.py``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from mtssl.model import MultiTaskNet, NetworkConfig
from mtssl.tasks import TASKS
from mtssl.train.config import TrainConfig

from .shardkit import TINY_TASK_OPTIONS, build_sets

TINY_TASKS = {name: task.tiny_config() for name, task in TASKS.items()}  # each task's own (Task.tiny_config)


def build_tiny_net(tasks: tuple[str, ...] = tuple(TASKS), **overrides) -> MultiTaskNet:
    config = NetworkConfig(**{"tasks": tasks, "depth": 18, "width": 8, **overrides})
    return MultiTaskNet(config, TINY_TASKS)


def build_batch(task: str, n: int = 2, size: int = 32, seed: int = 0) -> dict[str, torch.Tensor]:
    """A batch of random stored-format tensors for ``task`` (patch/view side ``size``): ``Task.example_batch``."""
    return TASKS[task].example_batch(n, size, torch.Generator().manual_seed(seed))


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
