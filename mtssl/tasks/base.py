"""The small contract every pretext task module follows.

A task is an ``nn.Module`` holding its head (and any fixed tables the loss needs, as buffers, so they move
with ``.to(device)``). Per training step the network calls, in order::

    inputs, targets = task.prepare(batch, mode, channels)   # stored uint8 tensors -> trunk input, targets
    outputs = task(features)                                # head on the lasso-combined block-3 features
    loss, metrics = task.loss_and_metric(outputs, targets)  # scalar loss, dict of detached scalars

Each task module also defines a frozen config dataclass with the paper's defaults (each number cites its
source) and its losses as pure functions.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import fields, replace
from typing import Any, ClassVar

import torch
from torch import nn

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
    augment: bool = True  # draw crops and flips per step while training (the network sets it from its config)

    def __init__(self, in_channels: int, stride: int, config: Any | None = None) -> None:
        super().__init__()
        self.config = resolve_widths(config if config is not None else self.config_class(), in_channels)
        self.in_channels = in_channels
        self.stride = stride

    def randomised(self) -> bool:
        """Whether ``prepare`` draws fresh crops and flips: when training with augmentation on (not in eval)."""
        return self.training and self.augment

    @abstractmethod
    def keys(self, mode: str) -> tuple[str, ...]:
        """Batch keys this task reads in ``mode`` (so the loader can skip decoding the others)."""

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
