"""Exemplar (Dosovitskiy et al., NIPS 2014), adapted with a triplet ranking loss as in the multi-task paper.

Each source image is its own pseudo-class; a stored sample holds K augmented views tiled in a row. Views
of one image are anchor and positive, views of the other images in the batch are negatives, and a hinge
on cosine distances asks every positive to be closer than every negative by a margin (Wang & Gupta,
ICCV 2015, "Unsupervised Learning of Visual Representations using Videos").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from mtssl.augment import flip_mask, flip_where, random_crop
from mtssl.contract import ShardSetError
from mtssl.inputs import image_input, match_channels, split_grid
from mtssl.tasks.base import (
    Batch,
    RunOptionError,
    RunOptions,
    Targets,
    Task,
    check_stored_side,
    declared,
    random_images,
)

if TYPE_CHECKING:
    from mtssl.data.shardsets import ShardSet


@dataclass(frozen=True)
class ExemplarHeadConfig:
    """Exemplar defaults.

    Attributes:
        hidden: width of the fc layer before the embedding (src: Wang & Gupta 2015, fc7 4096).
        dim: embedding size (src: Wang & Gupta 2015, fc8 1024).
        Both default to None: the paper's value at the paper's trunk, scaled with the trunk below it.
        margin: hinge margin on cosine distance (src: Wang & Gupta 2015, M = 0.5).
        drawn_views: views of each stored image used per step, drawn at random among the K the recipe
            stored (``ExemplarRecipeConfig.views``; src: the multi-task paper's triplets use two views of an
            image, anchor and positive); None uses all.
        hard_negatives: keep only the k hardest negatives of each (anchor, positive), as Wang & Gupta's
            in-batch hard-negative mining does; None uses every in-batch negative (ours).
        crop: train on a random ``crop`` x ``crop`` window of every drawn view, per step (ours; the central
            window when not training); None uses the stored views whole.
        flip: mirror each drawn view at random per step (ours).
        view_size: the stored view side the run expects of its shard set (the recipe's ``view_size``); a set
            built with another is refused before training. None accepts the set's.
    """

    WIDTHS: ClassVar[dict[str, tuple[int, int, int]]] = {"hidden": (4096, 64, 0), "dim": (1024, 32, 0)}

    hidden: int | None = None
    dim: int | None = None
    margin: float = 0.5
    drawn_views: int | None = 2
    hard_negatives: int | None = None
    crop: int | None = None
    flip: bool = True
    view_size: int | None = None


def split_views(tiles: torch.Tensor) -> torch.Tensor:
    """K square views tiled left to right (N, C, V, K*V) -> (N, K, C, V, V)."""
    height, width = tiles.shape[-2:]
    if width % height:
        raise ValueError(f"exemplar tiling must be K square views in a row, got {height}x{width}")
    return split_grid(tiles, 1, width // height)


def triplet_terms(embeddings: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosine distances of every (anchor, positive) and every (anchor, negative) in a batch.

    ``embeddings`` (N images, K views, D). Returns d_ap (N*K, K-1) and d_an (N*K, (N-1)*K).
    """
    n, k, _ = embeddings.shape
    if n < 2 or k < 2:
        raise ValueError(f"the triplet loss needs >= 2 images and >= 2 views each, got {n} x {k}")
    flat = F.normalize(embeddings.float().flatten(0, 1), dim=1)
    dist = 1 - flat @ flat.T
    ids = torch.arange(n, device=flat.device).repeat_interleave(k)
    same = ids[:, None] == ids[None, :]
    positive = same & ~torch.eye(n * k, dtype=torch.bool, device=flat.device)
    return dist[positive].view(n * k, k - 1), dist[~same].view(n * k, (n - 1) * k)


def triplet_loss(embeddings: torch.Tensor, margin: float, hard_negatives: int | None = None) -> torch.Tensor:
    """Mean hinge ``max(0, D(a, p) - D(a, n) + margin)`` over in-batch triplets, D = cosine distance."""
    d_ap, d_an = triplet_terms(embeddings)
    hinge = F.relu(d_ap[:, :, None] - d_an[:, None, :] + margin)
    if hard_negatives is not None:
        hinge = hinge.topk(min(hard_negatives, hinge.shape[-1]), dim=-1).values
    return hinge.mean()


def triplet_accuracy(embeddings: torch.Tensor) -> torch.Tensor:
    """Share of in-batch triplets whose positive is closer to the anchor than the negative."""
    d_ap, d_an = triplet_terms(embeddings)
    return (d_ap[:, :, None] < d_an[:, None, :]).float().mean()


def draw_views(views: torch.Tensor, count: int | None, generator: torch.Generator | None) -> torch.Tensor:
    """(N,K,C,V,V) -> (N,count,C,V,V): distinct views drawn at random per image (all when None)."""
    n, k = views.shape[:2]
    if count is None or count >= k:
        return views
    order = torch.rand(n, k, device=views.device, generator=generator).argsort(dim=1)[:, :count]
    return views[torch.arange(n, device=views.device)[:, None], order]


class ExemplarHead(nn.Module):
    """Global average pool, fc + ReLU, fc to the embedding (normalised in the loss)."""

    def __init__(self, in_channels: int, hidden: int, dim: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(in_channels, hidden),
            nn.ReLU(),
            nn.Linear(hidden, dim),
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features)


class ExemplarTask(Task):
    name = "exemplar"
    metric_name = "exemplar_acc"
    config_class = ExemplarHeadConfig
    FIELDS = {"harmonized": ("rgb",), "native": ("rgb",)}  # harmonized converts the views to L on the device

    def __init__(self, in_channels: int, stride: int, config: ExemplarHeadConfig | None = None) -> None:
        super().__init__(in_channels, stride, config)
        self.head = ExemplarHead(in_channels, self.config.hidden, self.config.dim)

    @classmethod
    def config_from_plain(cls, plain: Mapping[str, Any]) -> ExemplarHeadConfig:
        """Runs before the rename spelt ``drawn_views`` as ``views`` (the recipe's name for the stored ones)."""
        plain = dict(plain)
        if "views" in plain:
            plain["drawn_views"] = plain.pop("views")
        return super().config_from_plain(plain)

    @classmethod
    def check_set(cls, sset: ShardSet, run: RunOptions) -> None:
        if run.batch_size < 2:
            raise RunOptionError(
                "exemplar's triplet loss needs at least 2 images per batch: raise --task-batch exemplar"
            )
        check_stored_side(sset, "view_side", "view_size", cls.config_of(run).view_size)
        views = declared(sset, "views")
        if views.value < 2:
            raise ShardSetError(
                f"{sset.where} stores {views.value} view(s) per image; the triplet loss needs anchor and positive "
                f"views. Rebuild with `mtssl-data build exemplar {views.option} 4 ... --out {sset.root} --overwrite`"
            )

    @classmethod
    def tiny_config(cls) -> ExemplarHeadConfig:
        return ExemplarHeadConfig(hidden=32, dim=16)

    @classmethod
    def example_batch(cls, n: int, size: int, generator: torch.Generator) -> Batch:
        """Two ``size``-px views of each sample, tiled left to right."""
        return {"rgb": random_images(n, 3, size, 2 * size, generator)}

    def prepare(
        self, batch: Batch, mode: str, channels: int, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, Targets]:
        views = draw_views(split_views(batch["rgb"]), self.config.drawn_views, generator)
        flat, random = views.flatten(0, 1), self.randomised()
        flat = random_crop(flat, self.config.crop, generator, random)
        if self.config.flip:
            flat = flip_where(flat, flip_mask(flat.shape[0], flat.device, generator, random))
        x = image_input(flat, mode)
        return match_channels(x, channels), {"views": torch.tensor(views.shape[1])}

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features)

    def loss_and_metric(self, outputs: torch.Tensor, targets: Targets) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        embeddings = outputs.view(-1, int(targets["views"]), outputs.shape[-1])
        loss = triplet_loss(embeddings, self.config.margin, self.config.hard_negatives)
        return loss, {self.metric_name: triplet_accuracy(embeddings.detach())}
