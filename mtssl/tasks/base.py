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
- ``check_run(run)``: a run option it cannot work with (e.g. too small a batch), as a message;
- ``check_set(sset, run)``: its shard set's build options that contradict the run (``ShardSetError``);
- ``manifest_inputs(manifest)``: what its constructor takes from its set's manifest (the colour prior);
- ``loader_crop(recipe, run)``: the side of the square crop its loader takes of every image field.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any, ClassVar, Protocol

import torch
from torch import nn

from mtssl.inputs import check_mode


class ShardSetView(Protocol):
    """What a task reads of its shard set (``mtssl.data.shardsets.ShardSet`` is one). A protocol, not an import:
    the shard sets call the tasks' checks, so importing them here, even for types only, would be a cycle."""

    task: str
    root: str
    manifest: dict[str, Any]

    @property
    def recipe(self) -> dict[str, Any]: ...

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
    """What a run asks of every task's shard set and loader (from its train config)."""

    input_mode: str = "harmonized"
    batch_size: int = 1  # this task's batch
    patch_size: int | None = None  # relpos patch / exemplar view side the run expects; None accepts the set's
    motion_crop: int | None = None  # side of the square motion crops; None: the stored frames' shorter side


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
    def check_run(cls, run: RunOptions) -> str | None:
        """Why the run's options cannot train this task (a message), or None."""
        return None

    @classmethod
    def check_set(cls, sset: ShardSetView, run: RunOptions) -> None:
        """Raise ``ShardSetError`` when the set's build options contradict the run (the fields are checked
        by the caller)."""

    @classmethod
    def manifest_inputs(cls, manifest: Mapping[str, Any]) -> dict[str, Any]:
        """Keyword arguments of the constructor that come from the task's shard-set manifest."""
        return {}

    @classmethod
    def loader_crop(cls, recipe: Mapping[str, Any], run: RunOptions) -> int | None:
        """Side of the random square crop the loader takes of every image field (None: whole fields)."""
        return None

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


def check_patch_size(sset: ShardSetView, run: RunOptions, option: str, build_flag: str) -> None:
    """The set's stored patch side (``config.recipe.<option>``) must be the run's ``--patch-size``, when given."""
    from mtssl.contract import ShardSetError

    built = sset.recipe.get(option)
    if run.patch_size is not None and built != run.patch_size:
        raise ShardSetError(
            f"{sset.where} was built with {option} {built} (config.recipe.{option}), but this run expects "
            f"--patch-size {run.patch_size}. Pass --patch-size {built}, or rebuild the set with "
            f"`mtssl-data build {sset.task} {build_flag} {run.patch_size} ... --out {sset.root} --overwrite`"
        )
