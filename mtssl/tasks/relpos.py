"""Relative position (Doersch, Gupta & Efros, ICCV 2015), as in the multi-task paper.

A stored sample is a 3x3 grid of patches tiled into one image (``rgb`` and ``l``); the pair (centre,
neighbour n) has label ``RELPOS_LABELS[n]``. Both patches of a pair go through the shared trunk (siamese);
the head embeds each patch, joins the two embeddings and classifies 8 ways (softmax cross-entropy).

Patches are normalised per patch, not by the shared input modes of ``mtssl.inputs`` (src: deepcontext
``prep_image``): the kept channel (or L) loses its mean, dropped channels become uniform noise in
[-0.5, 0.5], and the patch is divided by its RMS and scaled by 50 (:func:`relpos_input`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from mtssl.augment import flip_mask, flip_where, random_crop
from mtssl.contract import RELPOS_CENTRE, RELPOS_GRID, RELPOS_LABELS
from mtssl.inputs import (
    check_mode,
    color_drop,
    match_channels,
    random_downsample,
    rgb_to_l8,
    rms_normalize,
    split_grid,
)
from mtssl.tasks.base import Batch, RunOptions, Targets, Task, check_stored_side, random_images

if TYPE_CHECKING:
    from mtssl.data.shardsets import ShardSet

NUM_CLASSES = 8
NEIGHBOURS = tuple(sorted(RELPOS_LABELS))
RMS_SCALE = 50.0  # src: deepcontext prep_image, "scale by 50 so the variance is roughly AlexNet's"
NOISE_AMPLITUDE = 1.0  # src: deepcontext prep_image, dropped channels = uniform(0, 1) - 0.5
DOWNSAMPLE_MIN_SIDE = 10  # src: deepcontext prep_image, "as little as 100 pixels"


@dataclass(frozen=True)
class RelposHeadConfig:
    """Relative-position defaults.

    Attributes:
        all_pairs: pair the centre with all 8 neighbours of a stored grid (True) or with one random
            neighbour (False). src: deepcontext ``imgloader`` pairs every patch with all its grid
            neighbours, so each patch through the trunk serves several pairs.
        patch_channels: 1x1 reduction of a patch's features (src: deepcontext pool5 has 256 channels).
        patch_grid: adaptive average pool to this grid before fc6 (src: deepcontext pool5 is 3x3 on
            96-px patches).
        patch_dim: per-patch fc6 width (src: deepcontext fc6, 4096).
        pair_dims: widths after joining the pair (src: deepcontext fc7 and fc8, 4096 each).
        The three widths default to None: the paper's value at the paper's trunk (1024 block-3 channels),
        scaled with the trunk's channels below it (``mtssl.tasks.base.follow_trunk``).
        noise: amplitude of the uniform noise that replaces dropped colour channels (src: deepcontext).
        rms_scale: per-patch RMS after normalisation (src: deepcontext).
        downsample_prob: probability of shrinking a patch and resizing it back (src: deepcontext, 0.33;
            the shard recipe leaves it to training time, like colour dropping and RMS normalisation).
        downsample_min_side: smallest side when shrinking (src: deepcontext, "as little as 100 pixels").
        crop: train on a random ``crop`` x ``crop`` window of every stored patch, drawn per patch and step
            (ours: fresh jitter of up to ``patch - crop`` pixels on top of the build's; the central window
            when not training); None trains on the stored patches.
        flip: mirror the whole grid of a sample at random per step (ours; deepcontext does not). A mirrored
            grid is the grid of the mirrored image, so the position labels stay right.
        patch_size: the stored patch side the run expects of its shard set (the recipe's ``patch``); a set
            built with another is refused before training. None accepts the set's.
    """

    WIDTHS: ClassVar[dict[str, tuple[int, int, int]]] = {
        "patch_channels": (256, 32, 0),
        "patch_dim": (4096, 64, 0),
        "pair_dims": (4096, 64, 2),
    }

    all_pairs: bool = True
    patch_channels: int | None = None
    patch_grid: int = 3
    patch_dim: int | None = None
    pair_dims: tuple[int, ...] | None = None
    noise: float = NOISE_AMPLITUDE
    rms_scale: float = RMS_SCALE
    downsample_prob: float = 0.33
    downsample_min_side: int = DOWNSAMPLE_MIN_SIDE
    crop: int | None = None
    flip: bool = False
    patch_size: int | None = None


def relpos_input(
    patches: torch.Tensor,
    mode: str,
    noise: float = NOISE_AMPLITUDE,
    scale: float = RMS_SCALE,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Relative-position patches (N,C,P,P), uint8 or float in 0-255 -> per-patch normalised floats.

    Harmonized: L (C=1) minus its mean, RMS-normalised. Native: RGB (C=3) colour-dropped, RMS-normalised.
    """
    x = patches.float()
    if check_mode(mode) == "harmonized":
        if x.shape[1] != 1:
            raise ValueError("harmonized relative-position input is the L channel (1 channel)")
        x = x - x.mean(dim=(1, 2, 3), keepdim=True)
    else:
        if x.shape[1] != 3:
            raise ValueError("native relative-position input is RGB (3 channels)")
        x = color_drop(x, noise, generator)
    return rms_normalize(x, scale)


def relpos_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Softmax cross-entropy over the 8 positions, averaged over pairs."""
    return F.cross_entropy(logits.float(), labels)


def relpos_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return (logits.argmax(dim=1) == labels).float().mean()


class RelposHead(nn.Module):
    """Per-patch embedding (1x1 conv, pool, fc6), then fc layers on each joined (centre, neighbour) pair.

    Input features are ordered sample by sample, ``group`` patches each, the centre first.
    """

    def __init__(self, in_channels: int, config: RelposHeadConfig, group: int) -> None:
        super().__init__()
        self.group = group
        flat = config.patch_channels * config.patch_grid**2
        self.patch = nn.Sequential(
            nn.Conv2d(in_channels, config.patch_channels, 1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(config.patch_grid),
            nn.Flatten(),
            nn.Linear(flat, config.patch_dim),
            nn.ReLU(),
        )
        layers: list[nn.Module] = []
        width = 2 * config.patch_dim
        for dim in config.pair_dims:
            layers += [nn.Linear(width, dim), nn.ReLU()]
            width = dim
        self.classifier = nn.Sequential(*layers, nn.Linear(width, NUM_CLASSES))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        emb = self.patch(features)
        emb = emb.view(-1, self.group, emb.shape[-1])
        centre = emb[:, :1].expand(-1, self.group - 1, -1)
        pairs = torch.cat([centre, emb[:, 1:]], dim=2)
        return self.classifier(pairs.flatten(0, 1))


class RelposTask(Task):
    name = "relpos"
    metric_name = "relpos_acc"
    config_class = RelposHeadConfig
    FIELDS = {"harmonized": ("rgb",), "native": ("rgb",)}  # harmonized converts the tiling to L on the device

    def __init__(self, in_channels: int, stride: int, config: RelposHeadConfig | None = None) -> None:
        super().__init__(in_channels, stride, config)
        self.group = RELPOS_GRID**2 if self.config.all_pairs else 2
        self.head = RelposHead(in_channels, self.config, self.group)
        self.register_buffer("neighbours", torch.tensor(NEIGHBOURS), persistent=False)
        self.register_buffer("labels", torch.tensor([RELPOS_LABELS[n] for n in NEIGHBOURS]), persistent=False)

    @classmethod
    def check_set(cls, sset: ShardSet, run: RunOptions) -> None:
        check_stored_side(sset, "patch_side", "patch_size", cls.config_of(run).patch_size)

    @classmethod
    def tiny_config(cls) -> RelposHeadConfig:
        return RelposHeadConfig(patch_channels=8, patch_dim=32, pair_dims=(32,))

    @classmethod
    def example_batch(cls, n: int, size: int, generator: torch.Generator) -> Batch:
        """The 3x3 grid of ``size``-px patches of each sample, tiled into one RGB image."""
        return {"rgb": random_images(n, 3, RELPOS_GRID * size, RELPOS_GRID * size, generator)}

    def select(self, patches: torch.Tensor, generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Grid patches (N,9,C,P,P) -> (N,G,C,P,P) with the centre first, and the pair labels."""
        n = patches.shape[0]
        neighbours = self.neighbours.to(patches.device)
        labels = self.labels.to(patches.device)
        if self.config.all_pairs:
            order = torch.cat([neighbours.new_tensor([RELPOS_CENTRE]), neighbours])
            return patches[:, order], labels.repeat(n)
        pick = torch.randint(0, len(NEIGHBOURS), (n,), device=patches.device, generator=generator)
        rows = torch.arange(n, device=patches.device)
        pair = torch.stack([patches[:, RELPOS_CENTRE], patches[rows, neighbours[pick]]], dim=1)
        return pair, labels[pick]

    def prepare(
        self, batch: Batch, mode: str, channels: int, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, Targets]:
        tiles = rgb_to_l8(batch["rgb"]) if check_mode(mode) == "harmonized" else batch["rgb"]
        random = self.randomised()
        if self.config.flip:
            tiles = flip_where(tiles, flip_mask(tiles.shape[0], tiles.device, generator, random))
        patches, labels = self.select(split_grid(tiles, RELPOS_GRID, RELPOS_GRID), generator)
        flat = random_crop(patches.flatten(0, 1), self.config.crop, generator, random).float()
        flat = random_downsample(flat, self.config.downsample_prob, self.config.downsample_min_side, generator)
        x = relpos_input(flat, mode, self.config.noise, self.config.rms_scale, generator)
        return match_channels(x, channels), {"labels": labels}

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features)

    def loss_and_metric(self, outputs: torch.Tensor, targets: Targets) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        labels = targets["labels"]
        return relpos_loss(outputs, labels), {self.metric_name: relpos_accuracy(outputs, labels).detach()}
