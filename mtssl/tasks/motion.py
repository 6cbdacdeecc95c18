"""Motion segmentation (Pathak et al., CVPR 2017, "Learning Features by Watching Objects Move").

From a single frame, predict which pixels will move: per-pixel logits at the mask's resolution and a
sigmoid cross-entropy against the stored binary mask (0/255).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from mtssl.augment import flip_mask, flip_where
from mtssl.contract import ShardSetError
from mtssl.inputs import image_input, match_channels
from mtssl.tasks.base import Batch, RunOptions, Targets, Task, random_images

if TYPE_CHECKING:
    from mtssl.data.shardsets import ShardSet


@dataclass(frozen=True)
class MotionHeadConfig:
    """Motion-segmentation defaults (the head is ours: Pathak et al. used an AlexNet-specific one).

    Attributes:
        hidden: channels of the head's 3x3 convolution (ours: 256 at the paper's 1024 block-3 channels); None
            follows the trunk (``mtssl.tasks.base.follow_trunk``).
        logit_stride: the head emits logits at this stride through a sub-pixel (pixel-shuffle) layer; they
            are then resized bilinearly to the mask's resolution (ours).
        flip: mirror frame and mask together at random per step (ours).
        crop: the loader draws a random ``crop`` x ``crop`` window of every stored frame and its mask (ours;
            at most the frames' shorter side, the recipe's ``size``); None: square windows of that side.
    """

    WIDTHS: ClassVar[dict[str, tuple[int, int, int]]] = {"hidden": (256, 32, 0)}

    hidden: int | None = None
    logit_stride: int = 4
    flip: bool = True
    crop: int | None = None


def motion_loss(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-pixel sigmoid cross-entropy; ``logits`` and ``mask`` (0/1 floats) both (N,1,H,W)."""
    return F.binary_cross_entropy_with_logits(logits.float(), mask)


def mask_iou(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean per-image IoU of ``logits > 0`` against the mask; an image with both empty scores 1."""
    pred = logits > 0
    truth = mask > 0.5
    inter = (pred & truth).flatten(1).sum(1).float()
    union = (pred | truth).flatten(1).sum(1).float()
    return torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union)).mean()


class MotionHead(nn.Module):
    """3x3 conv + ReLU, 1x1 conv to ``upsample**2`` channels, pixel shuffle to one logit map."""

    def __init__(self, in_channels: int, hidden: int, upsample: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, hidden, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(hidden, upsample**2, 1),
            nn.PixelShuffle(upsample),
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features)


class MotionTask(Task):
    name = "motion"
    metric_name = "motion_iou"
    config_class = MotionHeadConfig
    FIELDS = {"harmonized": ("rgb", "mask"), "native": ("rgb", "mask")}  # harmonized: frame to L on the device

    def __init__(self, in_channels: int, stride: int, config: MotionHeadConfig | None = None) -> None:
        super().__init__(in_channels, stride, config)
        upsample = max(stride // self.config.logit_stride, 1)
        self.head = MotionHead(in_channels, self.config.hidden, upsample)

    @classmethod
    def check_set(cls, sset: ShardSet, run: RunOptions) -> None:
        crop, side = cls.config_of(run).crop, sset.declared.get("frame_side")
        if crop is not None and side is not None and crop > side.value:
            raise ShardSetError(
                f"{sset.where} stores frames whose shorter side is {side.value} ({side.option}), smaller than "
                f"motion.crop {crop}. Pass --task-opt motion.crop={side.value} or less, or rebuild with "
                f"`mtssl-data build motion {side.option} {crop} ... --out {sset.root} --overwrite`"
            )

    @classmethod
    def loader_crop(cls, sset: ShardSet, run: RunOptions) -> int | None:
        """Square crops of the run's ``motion.crop`` side, else of the stored frames' shorter side."""
        side = sset.declared.get("frame_side")
        return cls.config_of(run).crop or (side.value if side is not None else None)

    @classmethod
    def tiny_config(cls) -> MotionHeadConfig:
        return MotionHeadConfig(hidden=16)

    @classmethod
    def example_batch(cls, n: int, size: int, generator: torch.Generator) -> Batch:
        """``size``-px frames of noise, each with a blocky foreground in a different quadrant."""
        mask = torch.zeros(n, 1, size, size, dtype=torch.uint8)
        for i in range(n):
            r, c = divmod(i % 4, 2)
            mask[i, :, r * size // 2 : (r + 1) * size // 2, c * size // 2 : (c + 1) * size // 2] = 255
        return {"rgb": random_images(n, 3, size, size, generator), "mask": mask}

    def prepare(
        self, batch: Batch, mode: str, channels: int, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, Targets]:
        rgb, mask = batch["rgb"], batch["mask"]
        if self.config.flip:
            flips = flip_mask(rgb.shape[0], rgb.device, generator, self.randomised())
            rgb, mask = flip_where(rgb, flips), flip_where(mask, flips)
        x = image_input(rgb, mode)
        mask = (mask > 127).float()
        return match_channels(x, channels), {"mask": mask}

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features)

    def loss_and_metric(self, outputs: torch.Tensor, targets: Targets) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        mask = targets["mask"]
        logits = F.interpolate(outputs.float(), size=mask.shape[-2:], mode="bilinear", align_corners=False)
        return motion_loss(logits, mask), {self.metric_name: mask_iou(logits.detach(), mask)}
