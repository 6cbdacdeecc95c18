"""Multi-GPU and multi-node training under ``torchrun``: process group, task assignment, DDP, metric reduction.

``torchrun`` sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and the rendezvous address; without them the run
is a single process and nothing here talks to a process group. NCCL on GPUs, gloo on CPU.

Two ways to spread the tasks (``--distributed``):

- ``all-tasks`` (default): every rank trains every task on its own mini-batches; DDP averages the
  gradients, so each task sees a global batch of ``world_size x batch``.
- ``task-per-rank``, as in the paper's set-up (separate workers per task, gradients combined): rank r
  trains ``tasks[r % n_tasks]``. Each rank's task loss is scaled by ``world_size / ranks_on_that_task``, so
  DDP's average over ranks gives the same objective as ``all-tasks``: the sum over tasks of each task's
  mean loss. The other tasks' heads and lasso rows get no gradient on a rank, so DDP runs with
  ``find_unused_parameters=True``, which reduces zeros for them: after the all-reduce every rank holds the
  same, complete gradient. Every rank adds the full L1 penalty, whose average is the penalty itself.

BatchNorm running statistics are broadcast from rank 0 at every step (DDP's default), so in task-per-rank
mode the shared normalisation layers keep rank 0's task's statistics; parameters are identical everywhere.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from mtssl.train.config import ConfigError, valid_device


@dataclass(frozen=True)
class DistEnv:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(option: str, local_rank: int = 0) -> torch.device:
    """``auto``: this rank's GPU when CUDA is available, else the CPU; ``cuda`` or ``cpu`` to force one."""
    if option == "auto":
        option = "cuda" if torch.cuda.is_available() else "cpu"
    if not valid_device(option):
        raise ConfigError(f"--device must be auto, cpu, cuda or cuda:N, got {option!r}")
    device = torch.device(option)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {option}, but torch sees no CUDA device (torch {torch.__version__})")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"--device {option}, but torch sees {torch.cuda.device_count()} CUDA device(s)")
        return device if device.index is not None else torch.device("cuda", local_rank % torch.cuda.device_count())
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"--device {option}, but this torch has no MPS backend here")
    return device


def setup(device_option: str) -> DistEnv:
    """Read torchrun's variables, pick the device and join the process group when there are several ranks."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_option, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return DistEnv(rank, world, local_rank, device)


def teardown() -> None:
    """Leave the process group once every rank is done with it (gloo aborts a rank that exits mid-way)."""
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def assign_tasks(tasks: Sequence[str], mode: str, rank: int, world: int) -> tuple[str, ...]:
    """The tasks rank ``rank`` trains."""
    if mode == "all-tasks":
        return tuple(tasks)
    if world < len(tasks):
        raise ConfigError(
            f"--distributed task-per-rank needs at least one rank per task ({len(tasks)} tasks), got {world} "
            "rank(s); start more ranks or use --distributed all-tasks"
        )
    return (tasks[rank % len(tasks)],)


def ranks_per_task(tasks: Sequence[str], mode: str, world: int) -> dict[str, int]:
    """How many ranks train each task."""
    if mode == "all-tasks":
        return dict.fromkeys(tasks, world)
    counts = dict.fromkeys(tasks, 0)
    for rank in range(world):
        counts[tasks[rank % len(tasks)]] += 1
    return counts


def loss_weights(tasks: Sequence[str], mode: str, world: int) -> dict[str, float]:
    """Per-task loss scale that makes DDP's gradient average equal the sum over tasks of their mean losses."""
    if mode == "all-tasks":
        return dict.fromkeys(tasks, 1.0)
    return {task: world / count for task, count in ranks_per_task(tasks, mode, world).items()}


def wrap(module: nn.Module, env: DistEnv, find_unused: bool) -> nn.Module:
    """DDP around ``module`` when there are several ranks; the module itself otherwise."""
    if not env.distributed:
        return module
    device_ids = [env.device.index] if env.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(module, device_ids=device_ids, find_unused_parameters=find_unused)


def reduce_mean(values: Mapping[str, float], keys: Sequence[str], device: torch.device) -> dict[str, float]:
    """Mean of each key over the ranks that report it (all ranks must call this, with the same ``keys``)."""
    if not dist.is_initialized():
        return {k: float(values[k]) for k in keys if k in values}
    sums = torch.tensor([float(values.get(k, 0.0)) for k in keys], dtype=torch.float64, device=device)
    counts = torch.tensor([float(k in values) for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(sums)
    dist.all_reduce(counts)
    return {k: (s / c).item() for k, s, c in zip(keys, sums, counts, strict=True) if c > 0}


def broadcast_stopped(stopped: Mapping[str, int], tasks: Sequence[str], device: torch.device) -> dict[str, int]:
    """Rank 0's early-stopped tasks (task -> step) on every rank; only rank 0 validates, so only it decides."""
    if not dist.is_initialized():
        return dict(stopped)
    steps = torch.tensor([int(stopped.get(task, 0)) for task in tasks], dtype=torch.int64, device=device)
    dist.broadcast(steps, src=0)
    return {task: int(s) for task, s in zip(tasks, steps.tolist(), strict=True) if s > 0}


def param_digest(module: nn.Module) -> str:
    """SHA-256 of every parameter's bytes, in name order: equal digests mean identical parameters."""
    digest = hashlib.sha256()
    for name, param in sorted(module.named_parameters()):
        digest.update(name.encode())
        digest.update(param.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def gather_digests(digest: str) -> list[str]:
    """Every rank's parameter digest (a one-element list without a process group)."""
    if not dist.is_initialized():
        return [digest]
    out: list[str] = [""] * dist.get_world_size()
    dist.all_gather_object(out, digest)
    return out
