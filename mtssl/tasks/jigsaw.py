"""Jigsaw puzzles (Noroozi & Favaro, ECCV 2016, "Unsupervised Learning of Visual Representations by Solving
Jigsaw Puzzles").

A stored sample holds the nine tiles of a 3x3 grid in their true order (``pipelines/recipes/jigsaw.py``).
Per sample and step a permutation is drawn from a fixed set of maximally distant permutations
(:func:`maximal_permutations`) and the tiles are fed in that order; each tile goes through the shared
trunk on its own, the head embeds each tile (shared weights), concatenates the nine embeddings in the fed
order and classifies which permutation of the set it was (softmax cross-entropy).

Against shortcuts (as Noroozi & Favaro): every tile is normalised by its own mean and standard
deviation (no low-level statistics shared by neighbours); the recipe's random gap between tiles hides
edge continuity; in native (RGB) mode the colour channels of every tile are shifted against each other
by a few pixels and a share of the images is fed gray (no chromatic aberration to read the position
from), or, as an option, the relative-position task's colour dropping is used instead.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from functools import lru_cache
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mtssl.augment import crop_at, random_crop
from mtssl.contract import ShardSetError
from mtssl.inputs import check_mode, color_drop, match_channels, rgb_to_l8, split_grid
from mtssl.tasks.base import Batch, RunOptions, ShardSetView, Targets, Task, declared, random_images

GRID = 3  # src: Noroozi & Favaro 2016, 3x3 tiles (the recipe's grid)
NUM_TILES = GRID * GRID
PERMUTATION_SEED = 0  # ours: the set's first permutation is drawn with this seed, so every run has the same set
DROP_NOISE = 1.0  # src: deepcontext prep_image, as the relative-position task: dropped channels uniform in +-0.5


@dataclass(frozen=True)
class JigsawHeadConfig:
    """Jigsaw defaults.

    Attributes:
        permutations: size of the permutation set, the number of classes (ours: 100; Noroozi & Favaro's
            best model used 1000, chosen the same way).
        tile_dim: width of the shared per-tile fc layer (src: Noroozi & Favaro's fc6, 512 per tile).
        hidden: width of the fc layer on the nine joined embeddings (src: Noroozi & Favaro's fc7, 4096).
            Both widths default to None: the paper's value at the paper's trunk (1024 block-3 channels),
            scaled with the trunk's channels below it (``mtssl.tasks.base.follow_trunk``).
        pool_grid: a tile's features are averaged to this grid before the per-tile fc layer (ours: 1, a
            global average).
        crop: train on a random ``crop`` x ``crop`` window of every stored tile, drawn per tile and step
            (ours: fresh jitter on top of the build's; the central window when not training); None trains on
            the stored tiles.
        channel_jitter: native mode, training: each colour channel of a tile is shifted by up to this many
            pixels in x and y (src: Noroozi & Favaro, 0, +-1 or +-2 pixels, against chromatic aberration).
        gray_prob: native mode, training: the share of samples whose tiles are fed gray (src: Noroozi &
            Favaro train on colour and gray images; the share is ours).
        drop_colour: native mode: instead of the two above, keep one random channel of every tile and
            replace the others by noise, as the relative-position task does (src: Doersch et al. 2015).
        scale: standard deviation of every tile after its normalisation (ours: the relative-position
            patches' RMS, deepcontext's 50, close to the spread of the other tasks' inputs).
    """

    WIDTHS: ClassVar[dict[str, tuple[int, int, int]]] = {"tile_dim": (512, 32, 0), "hidden": (4096, 64, 0)}

    permutations: int = 100
    tile_dim: int | None = None
    hidden: int | None = None
    pool_grid: int = 1
    crop: int | None = None
    channel_jitter: int = 2
    gray_prob: float = 0.3
    drop_colour: bool = False
    scale: float = 50.0

    def __post_init__(self) -> None:
        if not 2 <= self.permutations <= math.factorial(NUM_TILES):
            raise ValueError(f"jigsaw permutations must be 2 to 9! = 362880, got {self.permutations}")


@lru_cache(maxsize=1)
def all_permutations() -> np.ndarray:
    """The 9! permutations of the nine tiles, (362880, 9) int8, in lexicographic order."""
    table = np.array(list(itertools.permutations(range(NUM_TILES))), dtype=np.int8)
    table.setflags(write=False)
    return table


@lru_cache(maxsize=8)
def maximal_permutations(count: int, seed: int = PERMUTATION_SEED) -> np.ndarray:
    """``count`` permutations of nine tiles chosen greedily to be far apart, (count, 9) int64, read-only.

    src: Noroozi & Favaro 2016's greedy Hamming-distance selection: start from a random permutation, then
    repeatedly add the one farthest from those chosen. Farthest is taken here as the largest smallest Hamming
    distance to the chosen ones (max-min, ours; ties: the first in lexicographic order), so that no two
    classes are nearly the same shuffle. Deterministic for a seed; computed once per process (about 1 s for
    100 on one core). The 100 of the default seed are at least 6 tiles apart (``min_hamming``).
    """
    table = all_permutations()
    chosen = [int(np.random.default_rng(seed).integers(len(table)))]
    nearest = (table != table[chosen[0]]).sum(axis=1)
    for _ in range(count - 1):
        chosen.append(int(nearest.argmax()))
        nearest = np.minimum(nearest, (table != table[chosen[-1]]).sum(axis=1))
    out = table[chosen].astype(np.int64)
    out.setflags(write=False)
    return out


def min_hamming(perms: np.ndarray) -> int:
    """The smallest Hamming distance between two different rows of ``perms``."""
    distances = (perms[:, None] != perms[None]).sum(axis=-1)
    np.fill_diagonal(distances, perms.shape[1] + 1)
    return int(distances.min())


def shuffle_tiles(tiles: torch.Tensor, perms: torch.Tensor) -> torch.Tensor:
    """Tiles (N,9,...) in true order -> (N,9,...) where place ``i`` of sample ``n`` holds tile ``perms[n, i]``."""
    rows = torch.arange(tiles.shape[0], device=tiles.device)[:, None]
    return tiles[rows, perms]


def shift_channels(x: torch.Tensor, amount: int, generator: torch.Generator | None) -> torch.Tensor:
    """Shift every channel of every tile (M,C,T,T) by its own random offset in [-amount, amount] pixels in x and
    y; the border pixels are repeated into the gap (src: Noroozi & Favaro's colour-channel jitter)."""
    if amount <= 0:
        return x
    m, c, height, width = x.shape
    planes = F.pad(x.reshape(m * c, 1, height, width), (amount,) * 4, mode="replicate")
    ys, xs = torch.randint(0, 2 * amount + 1, (2, m * c), device=x.device, generator=generator)
    return crop_at(planes, ys, xs, height).reshape(m, c, height, width)


def gray_where(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """RGB tiles (M,3,T,T): the mean of the three channels in all three where ``mask`` (M,) is True."""
    return torch.where(mask.view(-1, 1, 1, 1), x.mean(dim=1, keepdim=True).expand_as(x), x)


def standardize(x: torch.Tensor, scale: float, eps: float = 1e-6) -> torch.Tensor:
    """Each tile (over C,H,W) minus its mean, divided by its standard deviation, times ``scale``
    (src: Noroozi & Favaro normalise every tile's mean and standard deviation on its own)."""
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    std = x.std(dim=(1, 2, 3), keepdim=True, correction=0)
    return (x - mean) / std.clamp_min(eps) * scale


def jigsaw_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Softmax cross-entropy over the permutation set, averaged over samples."""
    return F.cross_entropy(logits.float(), labels)


def jigsaw_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return (logits.argmax(dim=1) == labels).float().mean()


class JigsawHead(nn.Module):
    """Per tile: average pool, fc + ReLU (shared by the nine); the nine embeddings joined in the fed order,
    fc + ReLU, then a linear layer to the permutation classes.

    Input features are ordered sample by sample, nine tiles each, in the order they were fed.
    """

    def __init__(self, in_channels: int, config: JigsawHeadConfig) -> None:
        super().__init__()
        flat = in_channels * config.pool_grid**2
        self.tile = nn.Sequential(
            nn.AdaptiveAvgPool2d(config.pool_grid), nn.Flatten(), nn.Linear(flat, config.tile_dim), nn.ReLU()
        )
        self.classify = nn.Sequential(
            nn.Linear(NUM_TILES * config.tile_dim, config.hidden),
            nn.ReLU(),
            nn.Linear(config.hidden, config.permutations),
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        emb = self.tile(features)
        return self.classify(emb.view(-1, NUM_TILES * emb.shape[-1]))


class JigsawTask(Task):
    name = "jigsaw"
    metric_name = "jigsaw_acc"
    config_class = JigsawHeadConfig
    FIELDS = {"harmonized": ("tiles",), "native": ("tiles",)}  # harmonized converts the tiles to L on the device

    def __init__(self, in_channels: int, stride: int, config: JigsawHeadConfig | None = None) -> None:
        super().__init__(in_channels, stride, config)
        self.head = JigsawHead(in_channels, self.config)
        # saved with the head: the classes' meaning travels with the checkpoint
        self.register_buffer("perm_table", torch.from_numpy(maximal_permutations(self.config.permutations).copy()))

    @classmethod
    def check_set(cls, sset: ShardSetView, run: RunOptions) -> None:
        """A training ``crop`` larger than the set's stored tiles is refused before the run starts."""
        crop = cls.config_of(run).crop
        if crop is None:
            return
        built = declared(sset, "tile_side")
        if crop > built.value:
            raise ShardSetError(
                f"{sset.where} stores {built.value}-px tiles ({built.option} {built.value}), smaller than this run's "
                f"crop {crop}: pass --task-opt {sset.task}.crop={built.value} or less, or rebuild the set with tiles "
                f"of at least {crop} px (`mtssl-data build {sset.task} {built.option} T ... --out {sset.root} "
                "--overwrite`, T a multiple of 16 and at most a third of --size)"
            )

    @classmethod
    def tiny_config(cls) -> JigsawHeadConfig:
        return JigsawHeadConfig(tile_dim=16, hidden=32, permutations=10)

    @classmethod
    def example_batch(cls, n: int, size: int, generator: torch.Generator) -> Batch:
        """The 3x3 grid of ``size``-px tiles of each sample, in their true order, tiled into one RGB image."""
        return {"tiles": random_images(n, 3, GRID * size, GRID * size, generator)}

    def draw(self, tiles: torch.Tensor, generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Tiles (N,9,C,T,T) in true order -> the tiles shuffled by a permutation drawn per sample, and its class."""
        labels = torch.randint(0, len(self.perm_table), (tiles.shape[0],), device=tiles.device, generator=generator)
        return shuffle_tiles(tiles, self.perm_table.to(tiles.device)[labels]), labels

    def colour_input(self, x: torch.Tensor, generator: torch.Generator | None, random: bool) -> torch.Tensor:
        """Native mode: RGB tiles (M,3,T,T) in 0-255, made useless for chromatic-aberration shortcuts."""
        if self.config.drop_colour:
            return color_drop(x, DROP_NOISE, generator)
        if not random:
            return x
        x = shift_channels(x, self.config.channel_jitter, generator)
        gray = torch.rand(x.shape[0] // NUM_TILES, device=x.device, generator=generator) < self.config.gray_prob
        return gray_where(x, gray.repeat_interleave(NUM_TILES))  # a sample's nine tiles all gray, or none

    def prepare(
        self, batch: Batch, mode: str, channels: int, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, Targets]:
        mosaic = rgb_to_l8(batch["tiles"]) if check_mode(mode) == "harmonized" else batch["tiles"]
        random = self.randomised()
        shuffled, labels = self.draw(split_grid(mosaic, GRID, GRID), generator)
        flat = random_crop(shuffled.flatten(0, 1), self.config.crop, generator, random).float()
        if mode == "native":
            flat = self.colour_input(flat, generator, random)
        return match_channels(standardize(flat, self.config.scale), channels), {"labels": labels}

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features)

    def loss_and_metric(self, outputs: torch.Tensor, targets: Targets) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        labels = targets["labels"]
        return jigsaw_loss(outputs, labels), {self.metric_name: jigsaw_accuracy(outputs.detach(), labels)}
