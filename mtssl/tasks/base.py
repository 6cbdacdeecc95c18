"""The small contract every pretext task module follows.

A task is an ``nn.Module`` holding its head (and any fixed tables the loss needs, as buffers, so they move
with ``.to(device)``). Per training step the network calls, in order::

    inputs, targets = task.prepare(batch, mode, channels)   # stored uint8 tensors -> trunk input, targets
    outputs = task(features)                                # head on the lasso-combined block-3 features
    loss, metrics = task.loss_and_metric(outputs, targets)  # scalar loss, dict of detached scalars

Each task module also defines a frozen config dataclass with the paper's defaults (each number cites its
source) and its losses as pure functions, and its class says what the trainer needs to know of it, so
that the loop, the network, the shard-set checks and the plots hold no task name:

- ``FIELDS``: the batch keys it reads per input mode (the loader decodes only those);
- ``metric_name``: its metric in logs, plots and reports;
- ``check_set(sset, run)``: refuse a run it cannot train: ``ShardSetError`` when its shard set's declared
  parameters (``sset.declared``) contradict the run, ``RunOptionError`` when a run option does (too small a
  batch); ``run.config`` is its head config, which holds its own run options (relpos' ``patch_size``);
- ``manifest_inputs(manifest)``: what its constructor takes from its set's manifest (the colour prior);
- ``loader_crop(sset, run)``: the side of the square crop its loader takes of every image field;
- ``tiny_config()`` and ``example_batch(n, size, generator)``: a head config small enough for the tests' tiny
  trunk, and random samples in its stored layout, so the tests hold no table of tasks.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any, ClassVar, Protocol

import torch
from torch import nn

from mtssl.contract import ShardSetError
from mtssl.contract.manifest import Declared
from mtssl.inputs import check_mode


class ShardSetView(Protocol):
    """What a task reads of its shard set (``mtssl.data.shardsets.ShardSet`` is one). A protocol, not an import:
    the shard sets call the tasks' checks, so importing them here, even for types only, would be a cycle."""

    task: str
    root: str
    manifest: dict[str, Any]

    @property
    def declared(self) -> Mapping[str, Declared]: ...

    @property
    def where(self) -> str: ...

    def build_hint(self) -> str: ...


Batch = dict[str, torch.Tensor]
Targets = dict[str, torch.Tensor]

PAPER_CHANNELS = 1024  # block-3 channels of the paper's trunk (ResNet-v2-101, width 64): the heads' paper sizes


def follow_trunk(paper: int, in_channels: int, floor: int) -> int:
    """A head width that follows the trunk: the paper's width scaled by ``in_channels / 1024``, at least ``floor``.

    The paper's heads (4096-wide fc layers on 1024 channels) on a 64-channel CPU trunk hold ~95% of the
    parameters and most of the step time; scaled, they keep the paper's proportions to the trunk.
    """
    return max(floor, round(paper * in_channels / PAPER_CHANNELS))


def resolve_widths(config: Any, in_channels: int) -> Any:
    """Replace every ``None`` width of a task config by its trunk-following value.

    A config class lists its widths in ``WIDTHS``: field -> (paper width, floor, repeat), where ``repeat``
    makes a tuple of that many layers (``pair_dims``) and 0 a plain int.
    """
    widths: dict[str, tuple[int, int, int]] = getattr(config, "WIDTHS", {})
    names = {f.name for f in fields(config)}
    resolved = {}
    for name, (paper, floor, repeat) in widths.items():
        if name in names and getattr(config, name) is None:
            width = follow_trunk(paper, in_channels, floor)
            resolved[name] = (width,) * repeat if repeat else width
    return replace(config, **resolved) if resolved else config


@dataclass(frozen=True)
class RunOptions:
    """What a run asks of one task's shard set and loader (from its train config)."""

    input_mode: str = "harmonized"
    batch_size: int = 1  # this task's batch
    config: Any = None  # the task's head config (``--task-opt``); None: its defaults (``Task.config_of``)


class RunOptionError(ValueError):
    """A run option a task cannot train with (e.g. too small a batch); the train CLI reports it in one line."""


class Task(nn.Module, ABC):
    """Base class of a pretext task: config, head, input preparation, loss and metric.

    Args:
        in_channels: channels of the combined block-3 features the head reads.
        stride: output stride of those features (16, or 32 with slim strides).
        config: the task's config dataclass; ``None`` takes the paper defaults. Head widths left at ``None``
            follow the trunk (:func:`follow_trunk`); ``self.config`` holds the resolved values.
    """

    name: ClassVar[str]
    metric_name: ClassVar[str]
    config_class: ClassVar[type]
    FIELDS: ClassVar[Mapping[str, tuple[str, ...]]]  # input mode -> batch keys read (see mtssl.data.stream)
    augment: bool = True  # draw crops and flips per step while training (the network sets it from its config)

    def __init__(self, in_channels: int, stride: int, config: Any | None = None) -> None:
        super().__init__()
        self.config = resolve_widths(config if config is not None else self.config_class(), in_channels)
        self.in_channels = in_channels
        self.stride = stride

    def randomised(self) -> bool:
        """Whether ``prepare`` draws fresh crops and flips: when training with augmentation on (not in eval)."""
        return self.training and self.augment

    @classmethod
    def keys(cls, mode: str) -> tuple[str, ...]:
        """Batch keys this task reads in ``mode`` (so the loader can skip decoding the others)."""
        check_mode(mode)
        return cls.FIELDS[mode]

    @classmethod
    def config_from_plain(cls, plain: Mapping[str, Any]) -> Any:
        """The task's config from its JSON form (``--task-opt``, a checkpoint's resolved config)."""
        return cls.config_class(**plain)

    @classmethod
    def config_of(cls, run: RunOptions) -> Any:
        """The run's head config of this task, or its defaults."""
        return run.config if run.config is not None else cls.config_class()

    @classmethod
    def check_set(cls, sset: ShardSetView, run: RunOptions) -> None:
        """Raise ``ShardSetError`` when the set's declared parameters contradict the run, ``RunOptionError``
        when a run option cannot train this task (the fields are checked by the caller,
        ``mtssl.data.shardsets.check_run``)."""

    @classmethod
    def manifest_inputs(cls, manifest: Mapping[str, Any]) -> dict[str, Any]:
        """Keyword arguments of the constructor that come from the task's shard-set manifest."""
        return {}

    @classmethod
    def loader_crop(cls, sset: ShardSetView, run: RunOptions) -> int | None:
        """Side of the random square crop the loader takes of every image field (None: whole fields)."""
        return None

    @classmethod
    @abstractmethod
    def tiny_config(cls) -> Any:
        """A head config small enough for the tests' depth-18, width-8 trunk (their tiny networks and runs)."""

    @classmethod
    @abstractmethod
    def example_batch(cls, n: int, size: int, generator: torch.Generator) -> Batch:
        """``n`` random samples in the stored layout of the fields this task reads, with patches, views or
        images of side ``size`` (tests)."""

    @abstractmethod
    def prepare(
        self, batch: Batch, mode: str, channels: int, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, Targets]:
        """Stored uint8 tensors (on the device) -> (float trunk input (M,channels,H,W), targets)."""

    @abstractmethod
    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """The head: combined block-3 features (M,C,h,w) -> task outputs."""

    @abstractmethod
    def loss_and_metric(self, outputs: torch.Tensor, targets: Targets) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Scalar loss (fp32) and ``{metric_name: value}`` (detached scalars)."""


def random_images(n: int, channels: int, height: int, width: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` uint8 images (N,C,H,W) of uniform noise, for a task's ``example_batch``."""
    return torch.randint(0, 256, (n, channels, height, width), dtype=torch.uint8, generator=generator)


def declared(sset: ShardSetView, name: str) -> Declared:
    """The set's declared parameter ``name`` (``ShardSetError`` when its recipe declares none)."""
    params = sset.declared
    if name not in params:
        raise ShardSetError(f"{sset.where} declares no {name} in its manifest; rebuild it: {sset.build_hint()}")
    return params[name]


def check_stored_side(sset: ShardSetView, name: str, option: str, wanted: int | None) -> None:
    """The side the set stores (its declared ``name``) must be the run's ``--task-opt TASK.<option>``, when given."""
    if wanted is None:
        return
    built = declared(sset, name)
    if built.value != wanted:
        raise ShardSetError(
            f"{sset.where} was built with {built.option} {built.value}, but this run expects {sset.task}.{option} "
            f"{wanted}. Pass --task-opt {sset.task}.{option}={built.value}, or rebuild the set with "
            f"`mtssl-data build {sset.task} {built.option} {wanted} ... --out {sset.root} --overwrite`"
        )
