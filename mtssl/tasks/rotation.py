"""Rotation prediction (Gidaris, Singh & Komodakis, ICLR 2018, "Unsupervised Representation Learning by
Predicting Image Rotations").

Every stored upright image is fed in all four rotations (0, 90, 180, 270 degrees, counter-clockwise, in the
same batch, as Gidaris et al. found best) and the head classifies the rotation 4 ways (softmax
cross-entropy). The rotations are made here, on the device, from the one stored image
(``pipelines/recipes/rotation.py`` says why).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from mtssl.augment import flip_mask, flip_where, random_crop
from mtssl.inputs import image_input, match_channels
from mtssl.tasks.base import Batch, Targets, Task, random_images

NUM_ROTATIONS = 4


@dataclass(frozen=True)
class RotationHeadConfig:
    """Rotation defaults.

    Attributes:
        hidden: channels of the head's 3x3 convolution (ours: 256 at the paper's 1024 block-3 channels, as
            the motion head); None follows the trunk (``mtssl.tasks.base.follow_trunk``).
        pool_grid: the head averages its features to this grid before the classifier (ours: 2 keeps where
            things are, e.g. sky above; Gidaris et al. pool globally).
        crop: train on a random ``crop`` x ``crop`` window of every stored image, per step (Gidaris et
            al.: 224 of 256; the central window when not training); None trains on the stored images.
        flip: mirror the image at random per step before rotating it (Gidaris et al.; a mirrored upright
            image is still upright).
    """

    WIDTHS: ClassVar[dict[str, tuple[int, int, int]]] = {"hidden": (256, 32, 0)}

    hidden: int | None = None
    pool_grid: int = 2
    crop: int | None = None
    flip: bool = True


def rotate_all(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N,C,S,S) -> the four rotations of every image, (4N,C,S,S) grouped by rotation, and their labels."""
    rotated = torch.cat([torch.rot90(x, k, dims=(2, 3)) for k in range(NUM_ROTATIONS)])
    labels = torch.arange(NUM_ROTATIONS, device=x.device).repeat_interleave(x.shape[0])
    return rotated, labels


def rotation_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Softmax cross-entropy over the 4 rotations, averaged over images."""
    return F.cross_entropy(logits.float(), labels)


def rotation_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return (logits.argmax(dim=1) == labels).float().mean()


class RotationHead(nn.Module):
    """3x3 conv + ReLU, average pool to ``grid`` x ``grid``, linear to the 4 rotations."""

    def __init__(self, in_channels: int, hidden: int, grid: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(in_channels, hidden, 3, padding=1), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(grid)
        self.classify = nn.Linear(hidden * grid * grid, NUM_ROTATIONS)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.classify(self.pool(self.conv(features)).flatten(1))


class RotationTask(Task):
    name = "rotation"
    metric_name = "rotation_acc"
    config_class = RotationHeadConfig
    FIELDS = {"harmonized": ("rgb",), "native": ("rgb",)}  # harmonized converts the image to L on the device

    def __init__(self, in_channels: int, stride: int, config: RotationHeadConfig | None = None) -> None:
        super().__init__(in_channels, stride, config)
        self.head = RotationHead(in_channels, self.config.hidden, self.config.pool_grid)

    @classmethod
    def tiny_config(cls) -> RotationHeadConfig:
        return RotationHeadConfig(hidden=16)

    @classmethod
    def example_batch(cls, n: int, size: int, generator: torch.Generator) -> Batch:
        """Upright ``size``-px images (the rotations are made in ``prepare``)."""
        return {"rgb": random_images(n, 3, size, size, generator)}

    def prepare(
        self, batch: Batch, mode: str, channels: int, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, Targets]:
        rgb, random = batch["rgb"], self.randomised()
        rgb = random_crop(rgb, self.config.crop, generator, random)
        if self.config.flip:
            rgb = flip_where(rgb, flip_mask(rgb.shape[0], rgb.device, generator, random))
        rotated, labels = rotate_all(image_input(rgb, mode))
        return match_channels(rotated.contiguous(), channels), {"labels": labels}

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features)

    def loss_and_metric(self, outputs: torch.Tensor, targets: Targets) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        labels = targets["labels"]
        return rotation_loss(outputs, labels), {self.metric_name: rotation_accuracy(outputs.detach(), labels)}
