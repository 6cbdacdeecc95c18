"""From residual-flow evidence to a mask: thresholds, regions grown from seeds, clean-up, the guided filter
and GrabCut (steps 3-6 of :mod:`pipelines.motion.masks`)."""

from __future__ import annotations

import cv2
import numpy as np

from pipelines.motion.camera import ring_mask
from pipelines.motion.config import MaskConfig


def threshold_residual(
    residual: np.ndarray, reliable: np.ndarray, cfg: MaskConfig, gap: int = 1
) -> tuple[float, float]:
    """Adaptive threshold: ``noise_k`` times the background's residual level, floored at ``min_speed``
    times the pair's ``gap`` (frames): what moves slower relative to the scene does not count.

    The level is the median residual over the textured pixels of the border ring, which is mostly
    background in every frame the filter keeps (Pathak's border rule); flat regions' flow is guesswork
    and the middle of the frame may be mostly object. Falls back to all textured pixels, then all pixels.
    Returns (threshold, level).
    """
    enough = 0.01 * residual.size
    pick = reliable & ring_mask(residual.shape, cfg.ring_width)
    if np.count_nonzero(pick) < enough:
        pick = reliable if np.count_nonzero(reliable) >= enough else np.ones_like(reliable)
    level = float(np.median(residual[pick]))
    return max(cfg.min_speed * gap, cfg.noise_k * level), level


def combine_evidence(evidence: dict[int, np.ndarray], how: str) -> np.ndarray:
    """One evidence map from the pairs' maps (keyed by partner offset): ``min`` over all pairs, or
    ``directional``: the minimum over the two directions of the maximum over each direction's gaps."""
    maps = list(evidence.values())
    if len(maps) == 1:
        return maps[0]
    if how == "min":
        return np.minimum.reduce(maps)
    sides = [[m for d, m in evidence.items() if (d > 0) == forward] for forward in (True, False)]
    return np.minimum.reduce([np.maximum.reduce(side) for side in sides if side])


def _kernel(size: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))


def _half_max(seeds: np.ndarray, residual: np.ndarray, reliable: np.ndarray, cfg: MaskConfig) -> np.ndarray:
    """Cut each region at ``half_max`` times its level (a percentile of its textured pixels' residual)."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(seeds, connectivity=8)
    cut = np.zeros(count, np.float32)
    for k in range(1, count):
        x, y, w, h = stats[k, :4]
        box = (slice(y, y + h), slice(x, x + w))
        values = residual[box][(labels[box] == k) & reliable[box]]
        if values.size:
            rank = int(cfg.half_max_pct / 100 * (values.size - 1))
            cut[k] = cfg.half_max * np.partition(values, rank)[rank]
    return np.where((seeds > 0) & (residual > cut[labels]), 255, 0).astype(np.uint8)


def _flat_votes(fg: np.ndarray, reliable: np.ndarray, cfg: MaskConfig) -> np.ndarray:
    """Judge each flat (untextured) region as a whole: foreground when more than ``flat_vote`` of the textured
    pixels around it are foreground, the frame-border pixels it touches voting background. Flow cannot
    tell how a flat region moves; the edges around it can. Returns the flat pixels judged foreground."""
    count, labels = cv2.connectedComponents((~reliable).astype(np.uint8), connectivity=4)
    if count <= 1:
        return np.zeros_like(fg)
    around = cv2.dilate(labels.astype(np.uint16), np.ones((3, 3), np.uint8)).astype(np.intp)
    rim = reliable & (around > 0)
    votes = np.bincount(around[rim], weights=fg[rim] > 0, minlength=count)
    total = np.bincount(around[rim], minlength=count).astype(np.float64)
    edge = np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])
    total += cfg.border_vote * np.bincount(edge, minlength=count)
    yes = votes > cfg.flat_vote * np.maximum(total, 1)
    yes[0] = False
    return np.where(yes[labels], 255, 0).astype(np.uint8)


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """Fill the background regions (uint8 0/255 mask) that do not touch the frame border."""
    padded = cv2.copyMakeBorder(mask, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
    cv2.floodFill(padded, None, (0, 0), 255)
    return mask | cv2.bitwise_not(padded)[1:-1, 1:-1]


def _drop_small(mask: np.ndarray, min_area: float) -> np.ndarray:
    """Remove the 8-connected regions of a uint8 0/255 mask smaller than ``min_area`` pixels."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    keep = stats[:, cv2.CC_STAT_AREA] >= min_area
    keep[0] = False
    if keep[1:].all():
        return mask
    return np.where(keep[labels], 255, 0).astype(np.uint8)


def guided_filter(guide: np.ndarray, src: np.ndarray, radius: int, eps: float, sub: int = 2) -> np.ndarray:
    """Fast guided filter (He & Sun 2015) with a gray uint8 guide: edge-aware smoothing of float ``src``.

    The linear coefficients are computed at 1/``sub`` resolution and upsampled.
    """
    height, width = guide.shape
    small = (max(1, width // sub), max(1, height // sub))
    i_full = guide.astype(np.float32) / 255
    i = cv2.resize(i_full, small, interpolation=cv2.INTER_AREA)
    p = cv2.resize(src.astype(np.float32), small, interpolation=cv2.INTER_AREA)
    ksize = (2 * max(1, radius // sub) + 1,) * 2
    mean_i, mean_p = cv2.blur(i, ksize), cv2.blur(p, ksize)
    a = (cv2.blur(i * p, ksize) - mean_i * mean_p) / (cv2.blur(i * i, ksize) - mean_i * mean_i + eps)
    b = mean_p - a * mean_i
    a = cv2.resize(cv2.blur(a, ksize), (width, height), interpolation=cv2.INTER_LINEAR)
    b = cv2.resize(cv2.blur(b, ksize), (width, height), interpolation=cv2.INTER_LINEAR)
    return a * i_full + b


def _odd(size: int, scale: int) -> int:
    """A kernel size in working-resolution pixels, at 1/scale resolution (odd, at least 1)."""
    return max(1, round(size / scale)) | 1


def segment(evidence: np.ndarray, texture: np.ndarray, gray: np.ndarray, cfg: MaskConfig) -> np.ndarray:
    """Steps 4-5 of the module doc: the uint8 0/255 mask at ``gray``'s size of the textured pixels whose
    ``evidence`` (residual over threshold, so 1 is the threshold) exceeds 1, grown into regions.

    ``evidence`` and ``texture`` are at 1/``seg_scale`` of the frame ``gray``, which guides the edge
    snapping at full resolution.
    """
    height, width = gray.shape[:2]
    scale = max(1, cfg.seg_scale)
    reliable = texture >= cfg.min_texture
    mask = ((evidence > 1.0) & reliable).astype(np.uint8) * 255
    if cfg.open_px > 1:
        mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, _kernel(_odd(cfg.open_px, scale)))
    if not mask.any():
        return np.zeros((height, width), np.uint8)
    if cfg.half_max > 0:
        mask = _half_max(mask, evidence, reliable, cfg)
    if cfg.flat_vote > 0:
        mask |= _flat_votes(mask, reliable, cfg)
    if cfg.close_px > 1:
        mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, _kernel(_odd(cfg.close_px, scale)))
    mask = _drop_small(mask, cfg.min_region * mask.size)
    if cfg.fill_holes:
        mask = fill_holes(mask)
    if not mask.any():
        return np.zeros((height, width), np.uint8)
    soft = mask.astype(np.float32) * (1 / 255)
    if mask.shape != (height, width):
        soft = cv2.resize(soft, (width, height), interpolation=cv2.INTER_LINEAR)
    if cfg.guide_radius > 0:
        soft = guided_filter(gray, soft, cfg.guide_radius, cfg.guide_eps)
    full = cv2.compare(soft, 0.5, cv2.CMP_GT)
    if cfg.guide_radius > 0:  # snapping can shrink a region below min_region: check at low resolution first
        small = cv2.resize(full, (mask.shape[1], mask.shape[0]), interpolation=cv2.INTER_NEAREST)
        if _drop_small(small, cfg.min_region * small.size) is not small:
            full = _drop_small(full, cfg.min_region * full.size)
    return full


def grabcut_refine(mask: np.ndarray, rgb: np.ndarray, cfg: MaskConfig) -> np.ndarray:
    """Step 6: GrabCut on the frame's colours at 1/``grabcut_scale``, seeded by the motion mask.

    The mask's core (eroded by ``grabcut_core_px``) is fixed foreground: without it GrabCut often gives
    the whole object away to a background model that shares its colours. A ``grabcut_band_px`` band
    around the mask is probably background, everything farther is background. Returns ``mask`` unchanged
    when there is no core, the cut fails, or the cut agrees with the mask less than ``grabcut_agree``.
    """
    if not mask.any():
        return mask
    height, width = mask.shape
    scale = max(1, cfg.grabcut_scale)
    size = (max(1, width // scale), max(1, height // scale))
    small = cv2.resize(mask, size, interpolation=cv2.INTER_NEAREST)
    core = cv2.erode(small, _kernel(max(1, round(cfg.grabcut_core_px / scale))))
    if not core.any():
        return mask
    band = max(3, round(cfg.grabcut_band_px / scale) | 1)
    labels = np.full(small.shape, cv2.GC_BGD, np.uint8)
    labels[cv2.dilate(small, np.ones((band, band), np.uint8)) > 0] = cv2.GC_PR_BGD
    labels[small > 0] = cv2.GC_PR_FGD
    labels[core > 0] = cv2.GC_FGD
    colour = rgb if rgb.ndim == 3 else cv2.cvtColor(rgb, cv2.COLOR_GRAY2RGB)
    image = cv2.resize(colour, size, interpolation=cv2.INTER_AREA)
    models = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.setRNGSeed(0)  # GrabCut's k-means draws from OpenCV's per-thread RNG: same input, same mask
    try:
        cv2.grabCut(image, labels, None, *models, max(1, cfg.grabcut_iters), cv2.GC_INIT_WITH_MASK)
    except cv2.error:  # e.g. one side without a single pixel to fit its colour model to
        return mask
    cut = np.where((labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD), 255, 0).astype(np.uint8)
    cut = cv2.resize(cut, (width, height), interpolation=cv2.INTER_NEAREST)
    union = np.count_nonzero(cut | mask)
    return cut if np.count_nonzero(cut & mask) >= cfg.grabcut_agree * union else mask


def border_share(mask: np.ndarray, width: float) -> float:
    """Foreground share of the band within ``width`` (share of each side's length) of the frame border."""
    band = ring_mask(mask.shape, width)
    return float(np.count_nonzero(mask[band]) / np.count_nonzero(band))
