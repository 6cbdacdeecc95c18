"""Colorization (Zhang, Isola & Efros, ECCV 2016), as in the multi-task paper.

Input L; target the ab channels quantised to the Q = 313 in-gamut bins, predicted as a 313-way
distribution per location at a quarter of the input resolution. The target is soft-encoded (k nearest
bins, Gaussian weights), each pixel is weighted by the rebalancing weight of its nearest bin, and
grayscale images are left out of the loss.

The loss is reported as the KL divergence from the soft target: Zhang's multinomial cross-entropy minus
the target's entropy, a constant, so the gradients are identical and a perfect fit reads 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mtssl.augment import crop_at, crop_offsets, flip_mask, flip_where
from mtssl.contract import NUM_AB_BINS, ShardSetError, ab_bins
from mtssl.inputs import l_input, match_channels
from mtssl.tasks.base import Batch, RunOptions, Targets, Task, random_images

if TYPE_CHECKING:
    from mtssl.data.shardsets import ShardSet

AB_OFFSET = 128  # stored ab are int8: index the 256 x 256 table with value + 128


@dataclass(frozen=True)
class ColorHeadConfig:
    """Colorization defaults.

    Attributes:
        k: nearest bins in the soft encoding (src: Zhang et al. 2016, Sec. 2.1, k = 5; their released
            training layers use 10).
        sigma: Gaussian width of the soft encoding, ab units (src: Zhang et al., sigma = 5).
        lam: rebalancing mix with the uniform distribution (src: Zhang et al., Eq. 4, lambda = 1/2).
        prior_sigma: Gaussian smoothing of the empirical prior over the bin centres before rebalancing
            (src: Zhang et al., Eq. 4, sigma = 5); 0 or None uses the prior as given.
        gray_threshold: an image whose |a| and |b| never exceed this is grayscale and left out
            (src: Zhang et al.'s released training layers, threshold 5).
        crop: train on a random ``crop`` x ``crop`` window of L with the matching window of the targets, per
            step (src: Zhang et al. train on 176-px crops of 256-px images; a multiple of the target stride, 4;
            the central window when not training); None uses the stored images whole.
        flip: mirror L and targets together at random per step (ours).
        hidden: channels of the head (src: Zhang et al.'s conv8 has 256); None follows the trunk (256 at the
            paper's 1024 block-3 channels, ``mtssl.tasks.base.follow_trunk``).
    """

    WIDTHS: ClassVar[dict[str, tuple[int, int, int]]] = {"hidden": (256, 32, 0)}

    k: int = 5
    sigma: float = 5.0
    lam: float = 0.5
    prior_sigma: float | None = 5.0
    gray_threshold: int = 5
    hidden: int | None = None
    crop: int | None = None
    flip: bool = True


# ---- pure functions ---------------------------------------------------------------------------


def gaussian_kernel(bins: np.ndarray, sigma: float) -> np.ndarray:
    """(Q, Q) matrix exp(-|c_q - c_r|^2 / (2 sigma^2)) over bin centres (float64)."""
    diff = bins[:, None, :].astype(np.float64) - bins[None, :, :]
    return np.exp(-(diff**2).sum(-1) / (2 * sigma**2))


def smooth_prior(prior: np.ndarray, bins: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian-smoothed prior over the bin centres, renormalised to sum to 1."""
    smoothed = gaussian_kernel(bins, sigma) @ prior
    return smoothed / smoothed.sum()


def rebalance_weights(prior: np.ndarray, lam: float) -> np.ndarray:
    """w proportional to ((1 - lam) p + lam / Q)^-1, scaled so that sum_q p_q w_q = 1 (Zhang Eq. 4)."""
    prior = np.asarray(prior, dtype=np.float64)
    weights = 1.0 / ((1 - lam) * prior + lam / len(prior))
    return weights / (prior * weights).sum()


@lru_cache(maxsize=4)
def soft_encoding_table(k: int, sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Soft encoding of every integer ab in [-128, 127]^2: k nearest bins and their weights.

    Returns (indices (65536, k) int64, weights (65536, k) float32), row ``(a+128)*256 + (b+128)``.
    Squared distances between integers are exact in float32, so the choice is exact up to ties.
    """
    bins = torch.from_numpy(ab_bins()).float()
    values = torch.arange(-AB_OFFSET, AB_OFFSET, dtype=torch.float32)
    grid = torch.cartesian_prod(values, values)
    indices, weights = [], []
    for chunk in grid.split(8192):
        dist2 = (chunk[:, None, :] - bins[None, :, :]).square().sum(dim=-1)
        dist2, idx = dist2.topk(k, dim=1, largest=False)
        w = torch.exp(-(dist2 - dist2[:, :1]) / (2 * sigma**2))  # relative to the nearest: no underflow
        indices.append(idx)
        weights.append(w / w.sum(dim=1, keepdim=True))
    return torch.cat(indices), torch.cat(weights)


def soft_encode(ab: torch.Tensor, table: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """int8 ab (N,2,h,w) -> (bin indices (N,k,h,w), weights (N,k,h,w)) via the lookup table."""
    ab = ab.long() + AB_OFFSET
    row = ab[:, 0] * 256 + ab[:, 1]
    indices, weights = (t[row].permute(0, 3, 1, 2) for t in table)
    return indices, weights


def nearest_bins(ab: torch.Tensor) -> torch.Tensor:
    """int8 ab (N,2,h,w) -> index of the nearest of the 313 bins (N,h,w), by brute force (small batches)."""
    points = ab.numpy().transpose(0, 2, 3, 1).reshape(-1, 1, 2).astype(np.int64)
    dist = ((points - ab_bins()[None]) ** 2).sum(-1)
    return torch.from_numpy(dist.argmin(1).reshape(ab.shape[0], *ab.shape[2:]))


def is_grayscale(ab: torch.Tensor, threshold: int) -> torch.Tensor:
    """(N,) True where no |a| or |b| exceeds ``threshold`` (Zhang et al.'s gray-image mask)."""
    return ab.abs().amax(dim=(1, 2, 3)) <= threshold


def color_loss(
    logits: torch.Tensor,
    indices: torch.Tensor,
    weights: torch.Tensor,
    pixel_weights: torch.Tensor,
    valid: torch.Tensor,
) -> torch.Tensor:
    """Rebalanced KL(soft target || softmax(logits)), averaged over the pixels of valid images.

    Shapes: logits (N,Q,h,w); indices/weights (N,k,h,w); pixel_weights (N,h,w); valid (N,) bool.
    """
    log_probs = F.log_softmax(logits.float(), dim=1).gather(1, indices)
    kl = (weights * (weights.clamp_min(1e-12).log() - log_probs)).sum(dim=1)
    mask = valid.to(kl.dtype)[:, None, None]
    count = mask.sum() * kl.shape[1] * kl.shape[2]
    return (kl * pixel_weights * mask).sum() / count.clamp_min(1)


def color_accuracy(logits: torch.Tensor, bins: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Share of pixels of valid images whose most likely bin is the target's nearest bin (0 if none)."""
    hits = (logits.argmax(dim=1) == bins).float() * valid.float()[:, None, None]
    count = valid.float().sum() * bins.shape[1] * bins.shape[2]
    return hits.sum() / count.clamp_min(1)


# ---- head and task ----------------------------------------------------------------------------


class ColorHead(nn.Module):
    """3x3 conv, bilinear upsampling to a quarter of the input resolution, 3x3 conv, 1x1 conv to Q."""

    def __init__(self, in_channels: int, hidden: int, upsample: int) -> None:
        super().__init__()
        self.upsample = upsample
        self.reduce = nn.Conv2d(in_channels, hidden, 3, padding=1)
        self.refine = nn.Conv2d(hidden, hidden, 3, padding=1)
        self.classify = nn.Conv2d(hidden, NUM_AB_BINS, 1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.reduce(features))
        if self.upsample > 1:
            x = F.interpolate(x, scale_factor=self.upsample, mode="bilinear", align_corners=False)
        return self.classify(F.relu(self.refine(x)))


def prior_array(ab_prior: object | None) -> np.ndarray:
    """The manifest's ``ab_prior`` (313 probabilities) as a normalised float64 array; uniform if None."""
    if ab_prior is None:
        return np.full(NUM_AB_BINS, 1.0 / NUM_AB_BINS)
    if isinstance(ab_prior, torch.Tensor):
        ab_prior = ab_prior.detach().cpu().numpy()
    prior = np.asarray(ab_prior, dtype=np.float64)
    if prior.shape != (NUM_AB_BINS,) or (prior < 0).any() or prior.sum() <= 0:
        raise ValueError(f"ab_prior must be {NUM_AB_BINS} non-negative probabilities, got shape {prior.shape}")
    return prior / prior.sum()


class ColorTask(Task):
    """Colorization. ``ab_prior``: the shard set's prior (manifest key ``ab_prior``); None = uniform."""

    name = "color"
    metric_name = "color_acc"
    config_class = ColorHeadConfig
    # Both modes read the stored L (its ab target must match it exactly); grayscale (from the json) is
    # optional: else it is told from ab.
    FIELDS = {"harmonized": ("l", "bins", "ab", "grayscale"), "native": ("l", "bins", "ab", "grayscale")}

    def __init__(
        self, in_channels: int, stride: int, config: ColorHeadConfig | None = None, ab_prior: object | None = None
    ) -> None:
        super().__init__(in_channels, stride, config)
        cfg = self.config
        self.head = ColorHead(in_channels, cfg.hidden, max(stride // 4, 1))
        prior = prior_array(ab_prior)
        if cfg.prior_sigma:
            prior = smooth_prior(prior, ab_bins(), cfg.prior_sigma)
        self.register_buffer("class_weights", torch.from_numpy(rebalance_weights(prior, cfg.lam)).float())
        indices, weights = soft_encoding_table(cfg.k, cfg.sigma)
        self.register_buffer("table_indices", indices, persistent=False)
        self.register_buffer("table_weights", weights, persistent=False)

    @classmethod
    def check_set(cls, sset: ShardSet, run: RunOptions) -> None:
        prior = sset.manifest.get("ab_prior")
        if not isinstance(prior, list) or len(prior) != NUM_AB_BINS:
            raise ShardSetError(
                f"{sset.where} has no {NUM_AB_BINS}-bin ab_prior in its manifest (class rebalancing needs it); "
                f"rebuild it: {sset.build_hint()}"
            )

    @classmethod
    def manifest_inputs(cls, manifest: Mapping[str, Any]) -> dict[str, Any]:
        """The set's empirical ab prior, for class rebalancing."""
        return {"ab_prior": manifest.get("ab_prior")}

    @classmethod
    def tiny_config(cls) -> ColorHeadConfig:
        return ColorHeadConfig(hidden=32)

    @classmethod
    def example_batch(cls, n: int, size: int, generator: torch.Generator) -> Batch:
        """``size``-px L images with random colour targets at the target stride (``bins``: their nearest bins)."""
        ab = torch.randint(-60, 61, (n, 2, size // 4, size // 4), dtype=torch.int8, generator=generator)
        return {
            "l": random_images(n, 1, size, size, generator),
            "ab": ab,
            "bins": nearest_bins(ab),
            "grayscale": torch.zeros(n, dtype=torch.bool),
        }

    def prepare(
        self, batch: Batch, mode: str, channels: int, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, Targets]:
        ab = batch["ab"]
        bins = batch["bins"].long()
        bins = bins.squeeze(1) if bins.ndim == 4 else bins
        gray = batch.get("grayscale")
        gray = is_grayscale(ab, self.config.gray_threshold) if gray is None else gray.to(ab.device).bool()
        l8, ab, bins = self.crop_and_flip(batch["l"], ab, bins, generator)
        indices, weights = soft_encode(ab, (self.table_indices, self.table_weights))
        targets = {
            "indices": indices,
            "weights": weights,
            "pixel_weights": self.class_weights[bins],
            "bins": bins,
            "valid": ~gray,
        }
        return match_channels(l_input(l8), channels), targets

    def crop_and_flip(
        self, l8: torch.Tensor, ab: torch.Tensor, bins: torch.Tensor, generator: torch.Generator | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The same random window (at target-pixel offsets) and mirror of L (N,1,H,W), ab and bins."""
        random, cfg = self.randomised(), self.config
        stride = l8.shape[-1] // ab.shape[-1]
        if cfg.crop is not None and cfg.crop < l8.shape[-1]:
            if cfg.crop % stride:
                raise ValueError(f"color crop {cfg.crop} must be a multiple of the target stride {stride}")
            side = cfg.crop // stride
            ys = crop_offsets(l8.shape[0], ab.shape[-2] - side, l8.device, generator, random)
            xs = crop_offsets(l8.shape[0], ab.shape[-1] - side, l8.device, generator, random)
            l8 = crop_at(l8, ys * stride, xs * stride, cfg.crop)
            ab, bins = crop_at(ab, ys, xs, side), crop_at(bins[:, None], ys, xs, side)[:, 0]
        if cfg.flip:
            flips = flip_mask(l8.shape[0], l8.device, generator, random)
            l8, ab, bins = flip_where(l8, flips), flip_where(ab, flips), flip_where(bins, flips)
        return l8, ab, bins

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features)

    def loss_and_metric(self, outputs: torch.Tensor, targets: Targets) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        size = targets["bins"].shape[-2:]
        if outputs.shape[-2:] != size:
            outputs = F.interpolate(outputs.float(), size=size, mode="bilinear", align_corners=False)
        keys = ("indices", "weights", "pixel_weights", "valid")
        loss = color_loss(outputs, *(targets[key] for key in keys))
        accuracy = color_accuracy(outputs, targets["bins"], targets["valid"])
        return loss, {self.metric_name: accuracy.detach()}
