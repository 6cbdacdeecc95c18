"""Motion masks from dense optical flow with the camera's own motion removed (Pathak et al. 2017, as adapted).

For a frame pair (t, t + gap): DIS optical flow (OpenCV), a homography fitted to the flow with RANSAC
(affine fallback, then none), the residual flow thresholded adaptively, then morphological clean-up.
The mask is in frame t's pixels. Frames arrive already resized to the working resolution.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import cv2
import numpy as np

PRESETS = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}


@dataclass(frozen=True)
class MaskConfig:
    """Every knob of the mask; defaults tuned on the synthetic benchmark unless a source is named."""

    preset: str = "medium"  # ours, tuned: DIS preset ("ultrafast", "fast", "medium")
    gap: int = 2  # ours, tuned: frames between t and its partner
    grid_step: int = 6  # ours: spacing (px) of the flow samples the camera model is fitted to
    ransac_threshold: float = 1.0  # ours, tuned: RANSAC reprojection threshold (px)
    min_model_points: int = 12  # ours: fewer textured samples than this and no camera model is fitted
    noise_k: float = 4.0  # ours, tuned: threshold = max(min_residual, noise_k * background residual level)
    min_residual: float = 0.8  # ours, tuned: floor of the threshold (px of residual flow)
    open_px: int = 5  # ours, tuned: opening kernel (removes specks)
    close_px: int = 11  # ours, tuned: closing kernel (fills holes in objects)
    min_region: float = 0.01  # ours, tuned: drop connected regions smaller than this share of the frame
    fb_check: bool = False  # ours, tuned: drop pixels failing the forward-backward check (costs a second flow)
    min_texture: float = 8.0  # ours: samples with less mean |gradient| are not used to fit the camera
    ring_width: float = 0.15  # ours: border ring whose samples vote for the camera model
    border_prior: bool = True  # ours: prefer the model most of the border ring agrees with
    texture_tau: float = 0.0
    guide_radius: int = 0
    guide_eps: float = 0.01
    level_ring: bool = True
    seed_reliable: bool = True
    grow_px: int = 8
    min_reliable: float = 0.15  # ours: drop regions with a smaller share of reliable (textured) pixels
    half_max: float = 0.5  # ours: per region, keep pixels above this share of the region's residual level
    half_max_pct: float = 75.0  # ours: percentile of a region's residual taken as its level
    fill_holes: bool = True  # ours: fill enclosed holes of the mask
    fb_threshold: float = 1.0  # ours: forward-backward error (px) above which a pixel is unreliable
    min_fg: float = 0.10  # Pathak: drop frames with less foreground than this share
    max_fg: float = 0.80  # Pathak: drop frames with more foreground than this share
    border_width: float = 0.05  # Pathak: border band, as a share of each side's length
    max_border_fg: float = 0.10  # Pathak: drop frames whose border band is more foreground than this


@dataclass
class MaskResult:
    mask: np.ndarray  # (H, W) uint8, 0 or 255
    stats: dict[str, Any]


@dataclass(frozen=True)
class CameraFit:
    flow: np.ndarray  # (H, W, 2) float32 flow the camera model predicts
    model: str  # "homography", "affine" or "none"
    inlier_ratio: float


def make_flow(cfg: MaskConfig) -> cv2.DISOpticalFlow:
    """The DIS flow object; create once per worker and pass to every call (creation is not free)."""
    if cfg.preset not in PRESETS:
        raise ValueError(f"unknown DIS preset {cfg.preset!r}; choose from {sorted(PRESETS)}")
    return cv2.DISOpticalFlow_create(PRESETS[cfg.preset])


def to_gray(rgb: np.ndarray) -> np.ndarray:
    return rgb if rgb.ndim == 2 else cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)


def dense_flow(frame: np.ndarray, later: np.ndarray, flow: cv2.DISOpticalFlow) -> np.ndarray:
    """(H, W, 2) float32 flow from ``frame`` to ``later`` (x, y displacements in pixels)."""
    return flow.calc(to_gray(frame), to_gray(later), None)


@lru_cache(maxsize=8)
def _pixel_grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    return xs, ys


def _model_flow(matrix: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Flow field of a 3x3 (or 2x3 affine) point transform over the pixel grid."""
    xs, ys = _pixel_grid(*shape)
    m = np.vstack([matrix, [0, 0, 1]]) if matrix.shape[0] == 2 else matrix
    m = m.astype(np.float32)
    den = m[2, 0] * xs + m[2, 1] * ys + m[2, 2]
    u = (m[0, 0] * xs + m[0, 1] * ys + m[0, 2]) / den - xs
    v = (m[1, 0] * xs + m[1, 1] * ys + m[1, 2]) / den - ys
    return np.dstack([u, v])


def _sane_homography(h: np.ndarray | None, shape: tuple[int, int]) -> bool:
    """Finite, orientation-preserving, and moving no corner by more than the frame's size."""
    if h is None or not np.all(np.isfinite(h)) or abs(h[2, 2]) < 1e-9:
        return False
    height, width = shape
    corners = np.array([[0, 0], [width, 0], [0, height], [width, height]], np.float32)[None]
    moved = cv2.perspectiveTransform(corners, h)[0]
    return np.linalg.det(h[:2, :2] / h[2, 2]) > 0 and float(np.abs(moved - corners[0]).max()) < max(shape)


def texture_map(gray: np.ndarray, window: int = 7) -> np.ndarray:
    """Mean absolute Sobel gradient (|gx| + |gy|, 8-bit levels) over a ``window`` box: where flow is evidence."""
    gx = cv2.convertScaleAbs(cv2.Sobel(gray, cv2.CV_16S, 1, 0, ksize=3))
    gy = cv2.convertScaleAbs(cv2.Sobel(gray, cv2.CV_16S, 0, 1, ksize=3))
    return cv2.blur(cv2.add(gx, gy), (window, window)).astype(np.float32)


def _samples(shape: tuple[int, int], texture: np.ndarray, cfg: MaskConfig) -> tuple[np.ndarray, np.ndarray]:
    """Grid samples (x, y) with enough texture, and whether each lies in the border ring."""
    step = cfg.grid_step
    xs, ys = np.meshgrid(np.arange(step // 2, shape[1], step), np.arange(step // 2, shape[0], step))
    src = np.stack([xs.ravel(), ys.ravel()], 1)
    src = src[texture[src[:, 1], src[:, 0]] >= cfg.min_texture]
    ring = cfg.ring_width
    ry, rx = ring * shape[0], ring * shape[1]
    border = (src[:, 0] < rx) | (src[:, 0] >= shape[1] - rx) | (src[:, 1] < ry) | (src[:, 1] >= shape[0] - ry)
    return src, border


def _fit(src: np.ndarray, dst: np.ndarray, shape, cfg: MaskConfig):
    h, inliers = cv2.findHomography(src, dst, cv2.RANSAC, cfg.ransac_threshold, maxIters=2000, confidence=0.995)
    if _sane_homography(h, shape):
        return h, "homography"
    a, inliers = cv2.estimateAffine2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=cfg.ransac_threshold)
    if a is not None and np.all(np.isfinite(a)):
        return np.vstack([a, [0, 0, 1]]), "affine"
    return None, "none"


def _inliers(h: np.ndarray, src: np.ndarray, dst: np.ndarray, thr: float) -> np.ndarray:
    moved = cv2.perspectiveTransform(src[None].astype(np.float64), h)[0]
    return np.linalg.norm(moved - dst, axis=1) <= thr


def fit_camera(flow: np.ndarray, texture: np.ndarray, cfg: MaskConfig) -> CameraFit:
    """Fit the camera's motion to the flow at textured grid samples: homography, else affine, else none."""
    shape = flow.shape[:2]
    src, border = _samples(shape, texture, cfg)
    none = CameraFit(np.zeros_like(flow), "none", 0.0)
    if len(src) < cfg.min_model_points:
        return none
    dst = src + flow[src[:, 1], src[:, 0]]
    src, dst = src.astype(np.float32), dst.astype(np.float32)
    candidates = [_fit(src, dst, shape, cfg)]
    if cfg.border_prior and border.sum() >= cfg.min_model_points:
        candidates.append(_fit(src[border], dst[border], shape, cfg))
    best, best_score = None, (-1, -1)
    for h, model in candidates:
        if h is None:
            continue
        inl = _inliers(h, src, dst, cfg.ransac_threshold)
        score = (int(inl[border].sum()), int(inl.sum())) if cfg.border_prior else (0, int(inl.sum()))
        if score > best_score:
            best, best_score = (h, model, inl), score
    if best is None:
        return none
    h, model, inl = best
    return CameraFit(_model_flow(h, shape), model, float(inl.mean()))


def fb_error(forward: np.ndarray, backward: np.ndarray) -> np.ndarray:
    """|f(p) + b(p + f(p))|: near zero where the backward flow undoes the forward flow."""
    xs, ys = _pixel_grid(*forward.shape[:2])
    back = cv2.remap(backward, xs + forward[..., 0], ys + forward[..., 1], cv2.INTER_LINEAR, cv2.BORDER_REPLICATE)
    return np.linalg.norm(forward + back, axis=2)


def ring_mask(shape: tuple[int, int], width: float) -> np.ndarray:
    """The band within ``width`` (share of each side's length) of the frame border."""
    height, wide = shape
    by, bx = max(1, round(width * height)), max(1, round(width * wide))
    band = np.ones(shape, bool)
    band[by : height - by, bx : wide - bx] = False
    return band


def threshold_residual(residual: np.ndarray, reliable: np.ndarray, cfg: MaskConfig) -> tuple[float, float]:
    """Adaptive threshold: ``noise_k`` times the background's residual level, floored at ``min_residual``.

    The level is the median residual over the reliable (textured) pixels of the border ring, which is
    mostly background in every frame the filter keeps (Pathak's border rule); flat regions' flow is
    guesswork and the middle of the frame may be mostly object. Returns (threshold, level).
    """
    pick = reliable & ring_mask(residual.shape, cfg.ring_width) if cfg.level_ring else reliable
    if np.count_nonzero(pick) < 0.01 * residual.size:
        pick = reliable if np.count_nonzero(reliable) >= 0.01 * residual.size else np.ones_like(reliable)
    level = float(np.median(residual[pick]))
    return max(cfg.min_residual, cfg.noise_k * level), level


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """Fill background regions that do not touch the frame border."""
    padded = cv2.copyMakeBorder(mask, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
    cv2.floodFill(padded, None, (0, 0), 255)
    return mask | cv2.bitwise_not(padded)[1:-1, 1:-1]


def _kernel(size: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))


def _region_levels(labels: np.ndarray, count: int, residual: np.ndarray, reliable: np.ndarray, cfg: MaskConfig):
    """Per region: share of reliable pixels and the residual level (percentile over its reliable pixels)."""
    flat = labels.ravel()
    area = np.bincount(flat, minlength=count)
    rel = np.bincount(flat, weights=reliable.ravel(), minlength=count)
    level = np.zeros(count, np.float32)
    for k in range(1, count):
        values = residual[(labels == k) & reliable]
        level[k] = np.percentile(values, cfg.half_max_pct) if values.size else 0.0
    return rel / np.maximum(area, 1), level


def segment(residual: np.ndarray, reliable: np.ndarray, cfg: MaskConfig) -> tuple[np.ndarray, float, float]:
    """Seeds are reliable pixels over the threshold (opened); they grow by at most ``grow_px`` into any
    pixel over the threshold; then close, drop small regions, fill holes. Returns (mask, threshold, level)."""
    threshold, level = threshold_residual(residual, reliable, cfg)
    over = (residual > threshold).astype(np.uint8) * 255
    seeds = over & (reliable.astype(np.uint8) * 255) if cfg.seed_reliable else over
    if cfg.open_px > 1:
        seeds = cv2.morphologyEx(seeds, cv2.MORPH_OPEN, _kernel(cfg.open_px))
    mask = cv2.dilate(seeds, _kernel(2 * cfg.grow_px + 1)) & over if cfg.grow_px > 0 else seeds
    if cfg.close_px > 1:
        mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, _kernel(cfg.close_px))
    count, labels, comp, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if count > 1:
        keep = comp[:, cv2.CC_STAT_AREA] >= cfg.min_region * mask.size
        keep[0] = False
        mask = np.where(keep[labels], 255, 0).astype(np.uint8)
    if cfg.fill_holes:
        mask = fill_holes(mask)
    return mask, threshold, level


def guided_filter(guide: np.ndarray, src: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """He, Sun & Tang's guided filter (ECCV 2010) with a gray guide: edge-aware smoothing of ``src``."""
    ksize = (2 * radius + 1, 2 * radius + 1)
    i, p = guide.astype(np.float32) / 255, src.astype(np.float32)
    mean_i, mean_p = cv2.blur(i, ksize), cv2.blur(p, ksize)
    cov_ip = cv2.blur(i * p, ksize) - mean_i * mean_p
    var_i = cv2.blur(i * i, ksize) - mean_i * mean_i
    a = cov_ip / (var_i + eps)
    b = mean_p - a * mean_i
    return cv2.blur(a, ksize) * i + cv2.blur(b, ksize)


def border_share(mask: np.ndarray, width: float) -> float:
    """Foreground share of the band within ``width`` (share of each side's length) of the frame border."""
    height, wide = mask.shape
    by, bx = max(1, round(width * height)), max(1, round(width * wide))
    band = np.ones(mask.shape, bool)
    band[by : height - by, bx : wide - bx] = False
    return float(np.count_nonzero(mask[band]) / band.sum())


def mask_from_flow(
    forward: np.ndarray, gray: np.ndarray, cfg: MaskConfig, backward: np.ndarray | None = None
) -> MaskResult:
    """The mask and stats from a forward flow (and, for the forward-backward check, the backward flow)."""
    texture = texture_map(gray)
    camera = fit_camera(forward, texture, cfg)
    d = forward - camera.flow
    residual = cv2.magnitude(d[..., 0], d[..., 1])
    if cfg.texture_tau > 0:
        residual = residual * (texture / (texture + cfg.texture_tau))
    reliable = texture >= cfg.min_texture
    if backward is not None:
        residual = np.where(fb_error(forward, backward) <= cfg.fb_threshold, residual, 0)
    mask, threshold, level = segment(residual, reliable, cfg)
    if cfg.guide_radius > 0 and mask.any():
        soft = guided_filter(gray, mask.astype(np.float32) / 255, cfg.guide_radius, cfg.guide_eps)
        mask = np.where(soft > 0.5, 255, 0).astype(np.uint8)
    stats = {
        "model": camera.model,
        "inlier_ratio": round(camera.inlier_ratio, 4),
        "fg_share": round(float(np.count_nonzero(mask) / mask.size), 4),
        "border_share": round(border_share(mask, cfg.border_width), 4),
        "residual_level": round(level, 4),
        "threshold": round(threshold, 4),
    }
    return MaskResult(mask, stats)


def motion_mask(
    frame: np.ndarray, later: np.ndarray, cfg: MaskConfig, flow: cv2.DISOpticalFlow | None = None
) -> MaskResult:
    """Mask (in ``frame``'s pixels) of what moves on its own between ``frame`` and ``later`` (RGB uint8)."""
    dis = flow if flow is not None else make_flow(cfg)
    g0, g1 = to_gray(frame), to_gray(later)
    forward = dis.calc(g0, g1, None)
    backward = dis.calc(g1, g0, None) if cfg.fb_check else None
    return mask_from_flow(forward, g0, cfg, backward)


def naive_from_flow(forward: np.ndarray, gray: np.ndarray, cfg: MaskConfig) -> np.ndarray:
    """Baseline mask from a flow: its magnitude with no camera compensation, same threshold and clean-up."""
    magnitude = cv2.magnitude(forward[..., 0], forward[..., 1])
    if cfg.texture_tau > 0:
        texture = texture_map(gray)
        magnitude = magnitude * (texture / (texture + cfg.texture_tau))
    return segment(magnitude, texture_map(gray) >= cfg.min_texture, cfg)[0]


def naive_mask(
    frame: np.ndarray, later: np.ndarray, cfg: MaskConfig, flow: cv2.DISOpticalFlow | None = None
) -> np.ndarray:
    """Baseline: the flow magnitude with no camera compensation, same threshold scheme and clean-up."""
    dis = flow if flow is not None else make_flow(cfg)
    g0 = to_gray(frame)
    return naive_from_flow(dis.calc(g0, to_gray(later), None), g0, cfg)


def filter_reason(stats: dict[str, Any], cfg: MaskConfig) -> str | None:
    """Pathak's frame filter: None keeps the frame, else a short reason."""
    if stats["fg_share"] < cfg.min_fg:
        return f"foreground below {cfg.min_fg:.0%}"
    if stats["fg_share"] > cfg.max_fg:
        return f"foreground above {cfg.max_fg:.0%}"
    if stats["border_share"] > cfg.max_border_fg:
        return "foreground on border"
    return None


def is_scene_cut(frame: np.ndarray, later: np.ndarray, threshold: float = 0.5) -> bool:
    """A cheap cut detector: correlation of 32-bin gray histograms of 64-px thumbnails below ``threshold``."""
    hists = []
    for image in (frame, later):
        gray = to_gray(image)
        small = cv2.resize(gray, (64, max(1, round(64 * gray.shape[0] / gray.shape[1]))), interpolation=cv2.INTER_AREA)
        hist = cv2.calcHist([small], [0], None, [32], [0, 256])
        hists.append(hist)
    return cv2.compareHist(hists[0], hists[1], cv2.HISTCMP_CORREL) < threshold
