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


def fit_camera(flow: np.ndarray, gray: np.ndarray, cfg: MaskConfig) -> CameraFit:
    """Fit the camera's motion to the flow at textured grid samples: homography, else affine, else none."""
    shape = flow.shape[:2]
    step = cfg.grid_step
    src = np.stack(np.meshgrid(np.arange(step // 2, shape[1], step), np.arange(step // 2, shape[0], step)), -1)
    src = src.reshape(-1, 2)
    gx = cv2.Sobel(gray, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(gray, cv2.CV_32F, 0, 1, ksize=3)
    energy = cv2.blur(gx * gx + gy * gy, (step, step))[src[:, 1], src[:, 0]]
    src = src[energy > 25.0]  # ours: flow in flat regions is interpolation, not evidence
    none = CameraFit(np.zeros_like(flow), "none", 0.0)
    if len(src) < cfg.min_model_points:
        return none
    dst = src + flow[src[:, 1], src[:, 0]]
    src, dst = src.astype(np.float32), dst.astype(np.float32)
    h, inliers = cv2.findHomography(src, dst, cv2.RANSAC, cfg.ransac_threshold, maxIters=2000, confidence=0.995)
    if _sane_homography(h, shape):
        return CameraFit(_model_flow(h, shape), "homography", float(inliers.mean()))
    a, inliers = cv2.estimateAffine2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=cfg.ransac_threshold)
    if a is not None and np.all(np.isfinite(a)):
        return CameraFit(_model_flow(a, shape), "affine", float(inliers.mean()))
    return none


def fb_error(forward: np.ndarray, backward: np.ndarray) -> np.ndarray:
    """|f(p) + b(p + f(p))|: near zero where the backward flow undoes the forward flow."""
    xs, ys = _pixel_grid(*forward.shape[:2])
    back = cv2.remap(backward, xs + forward[..., 0], ys + forward[..., 1], cv2.INTER_LINEAR, cv2.BORDER_REPLICATE)
    return np.linalg.norm(forward + back, axis=2)


def threshold_residual(residual: np.ndarray, cfg: MaskConfig, valid: np.ndarray | None = None) -> tuple[float, float]:
    """Adaptive threshold: ``noise_k`` times the residual level of the background, floored at ``min_residual``.

    The background level is the median residual (more than half of every kept frame is background,
    since the filter drops frames over 80% foreground). Returns (threshold, level).
    """
    values = residual[valid] if valid is not None and valid.any() else residual
    level = float(np.median(values))
    return max(cfg.min_residual, cfg.noise_k * level), level


def clean_mask(raw: np.ndarray, cfg: MaskConfig) -> np.ndarray:
    """Open (specks), close (holes and gaps), drop small regions, fill enclosed holes; returns uint8 0/255."""
    mask = raw.astype(np.uint8) * 255
    if cfg.open_px > 1:
        mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (cfg.open_px,) * 2))
    if cfg.close_px > 1:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (cfg.close_px,) * 2)
        mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, kernel)
    count, labels, comp, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if count > 1:
        keep = comp[:, cv2.CC_STAT_AREA] >= cfg.min_region * mask.size
        keep[0] = False
        mask = np.where(keep[labels], 255, 0).astype(np.uint8)
    return mask


def border_share(mask: np.ndarray, width: float) -> float:
    """Foreground share of the band within ``width`` (share of each side's length) of the frame border."""
    height, wide = mask.shape
    by, bx = max(1, round(width * height)), max(1, round(width * wide))
    band = np.ones(mask.shape, bool)
    band[by : height - by, bx : wide - bx] = False
    return float(np.count_nonzero(mask[band]) / band.sum())


def motion_mask(
    frame: np.ndarray, later: np.ndarray, cfg: MaskConfig, flow: cv2.DISOpticalFlow | None = None
) -> MaskResult:
    """Mask (in ``frame``'s pixels) of what moves on its own between ``frame`` and ``later`` (RGB uint8)."""
    dis = flow if flow is not None else make_flow(cfg)
    g0, g1 = to_gray(frame), to_gray(later)
    forward = dis.calc(g0, g1, None)
    camera = fit_camera(forward, g0, cfg)
    residual = np.linalg.norm(forward - camera.flow, axis=2)
    valid = None
    if cfg.fb_check:
        valid = fb_error(forward, dis.calc(g1, g0, None)) <= cfg.fb_threshold
    threshold, level = threshold_residual(residual, cfg, valid)
    raw = residual > threshold if valid is None else (residual > threshold) & valid
    mask = clean_mask(raw, cfg)
    stats = {
        "model": camera.model,
        "inlier_ratio": round(camera.inlier_ratio, 4),
        "fg_share": round(float(np.count_nonzero(mask) / mask.size), 4),
        "border_share": round(border_share(mask, cfg.border_width), 4),
        "residual_level": round(level, 4),
        "threshold": round(threshold, 4),
        "camera_motion": round(float(np.median(np.linalg.norm(camera.flow, axis=2))), 4),
    }
    return MaskResult(mask, stats)


def naive_mask(
    frame: np.ndarray, later: np.ndarray, cfg: MaskConfig, flow: cv2.DISOpticalFlow | None = None
) -> np.ndarray:
    """Baseline: the flow magnitude with no camera compensation, same threshold scheme and clean-up."""
    dis = flow if flow is not None else make_flow(cfg)
    magnitude = np.linalg.norm(dense_flow(frame, later, dis), axis=2)
    threshold, _ = threshold_residual(magnitude, cfg)
    return clean_mask(magnitude > threshold, cfg)


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
