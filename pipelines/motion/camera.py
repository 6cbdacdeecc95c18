"""Optical flow and the camera's own motion: DIS flow on gray frames, a homography (or affine) fitted with
RANSAC to the flow at textured samples, and the residual flow that is left (steps 1-3 of
:mod:`pipelines.motion.masks`)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from pipelines.motion.config import PRESETS, MaskConfig


@dataclass(frozen=True)
class CameraFit:
    matrix: np.ndarray | None  # 3x3 point transform frame t -> partner, None for "none"
    model: str  # "homography", "affine" or "none"
    inlier_ratio: float  # share of the textured samples within ransac_threshold of the model


def make_flow(cfg: MaskConfig) -> cv2.DISOpticalFlow:
    """The DIS flow object; create once per worker and reuse it for every pair."""
    if cfg.preset not in PRESETS:
        raise ValueError(f"unknown DIS preset {cfg.preset!r}; choose from {sorted(PRESETS)}")
    flow = cv2.DISOpticalFlow_create(PRESETS[cfg.preset])
    if cfg.refine_iters is not None:
        flow.setVariationalRefinementIterations(cfg.refine_iters)
    if cfg.finest_scale is not None:
        flow.setFinestScale(cfg.finest_scale)
    return flow


def to_gray(image: np.ndarray) -> np.ndarray:
    """RGB uint8 (H, W, 3) to gray; gray passes through."""
    return image if image.ndim == 2 else cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)


def dense_flow(frame: np.ndarray, later: np.ndarray, flow: cv2.DISOpticalFlow) -> np.ndarray:
    """(H, W, 2) float32 flow from ``frame`` to ``later`` (x, y displacements in pixels)."""
    return flow.calc(to_gray(frame), to_gray(later), None)


def fb_error(forward: np.ndarray, backward: np.ndarray) -> np.ndarray:
    """|f(p) + b(p + f(p))|: near zero where the backward flow undoes the forward flow."""
    grid = _pixel_grid(*forward.shape[:2])
    back = cv2.remap(backward, grid + forward, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    total = forward + back
    return cv2.magnitude(total[..., 0], total[..., 1])


@lru_cache(maxsize=8)
def _pixel_grid(height: int, width: int) -> np.ndarray:
    """(H, W, 2) float32 pixel coordinates (x, y); read-only, shared."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    grid = np.dstack([xs, ys])
    grid.flags.writeable = False
    return grid


def model_flow(matrix: np.ndarray | None, shape: tuple[int, int]) -> np.ndarray:
    """Flow field (H, W, 2) of a 3x3 point transform over the pixel grid (zeros for None)."""
    if matrix is None:
        return np.zeros((*shape, 2), np.float32)
    grid = _pixel_grid(*shape)
    return cv2.perspectiveTransform(grid, matrix.astype(np.float64)) - grid


def texture_map(gray: np.ndarray, window: int = 7) -> np.ndarray:
    """Mean of |gx| + |gy| (3x3 Sobel, 8-bit levels) over a ``window`` box: how much a pixel's flow says."""
    gx = cv2.convertScaleAbs(cv2.Sobel(gray, cv2.CV_16S, 1, 0, ksize=3))
    gy = cv2.convertScaleAbs(cv2.Sobel(gray, cv2.CV_16S, 0, 1, ksize=3))
    return cv2.blur(cv2.add(gx, gy, dtype=cv2.CV_16U), (window, window)).astype(np.float32)


@lru_cache(maxsize=8)
def ring_mask(shape: tuple[int, int], width: float) -> np.ndarray:
    """The band within ``width`` (share of each side's length) of the frame border; read-only, shared."""
    height, wide = shape
    by, bx = max(1, round(width * height)), max(1, round(width * wide))
    band = np.ones(shape, bool)
    band[by : height - by, bx : wide - bx] = False
    band.flags.writeable = False
    return band


def _samples(texture: np.ndarray, cfg: MaskConfig) -> tuple[np.ndarray, np.ndarray]:
    """Textured grid samples (x, y) and whether each lies in the border ring."""
    step = cfg.grid_step
    ys, xs = np.mgrid[step // 2 : texture.shape[0] : step, step // 2 : texture.shape[1] : step]
    src = np.stack([xs.ravel(), ys.ravel()], 1)
    src = src[texture[src[:, 1], src[:, 0]] >= cfg.min_texture]
    return src, ring_mask(texture.shape, cfg.ring_width)[src[:, 1], src[:, 0]]


def _sane(h: np.ndarray | None, shape: tuple[int, int]) -> bool:
    """Finite, orientation-preserving, and moving no corner by more than the frame's size."""
    if h is None or not np.all(np.isfinite(h)) or abs(h[2, 2]) < 1e-9:
        return False
    height, width = shape
    corners = np.array([[[0, 0], [width, 0], [0, height], [width, height]]], np.float64)
    moved = cv2.perspectiveTransform(corners, h)
    return np.linalg.det(h[:2, :2] / h[2, 2]) > 0 and float(np.abs(moved - corners).max()) < max(shape)


def _ransac(src: np.ndarray, dst: np.ndarray, shape: tuple[int, int], cfg: MaskConfig):
    """(3x3 matrix, model name): RANSAC homography, else RANSAC affine, else (None, "none").

    At most ``max_model_points`` evenly spread samples go into the fit: RANSAC's scoring and the final
    refinement cost grows with the points, the eight parameters of a homography do not need a thousand.
    """
    if len(src) > cfg.max_model_points:
        keep = np.linspace(0, len(src) - 1, cfg.max_model_points).round().astype(int)
        src, dst = src[keep], dst[keep]
    if len(src) >= max(cfg.min_model_points, 4):
        h, _ = cv2.findHomography(src, dst, cv2.USAC_FAST, cfg.ransac_threshold, maxIters=2000, confidence=0.995)
        if _sane(h, shape):
            return h, "homography"
    if len(src) >= max(cfg.min_model_points, 3):
        a, _ = cv2.estimateAffine2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=cfg.ransac_threshold)
        if a is not None and np.all(np.isfinite(a)):
            return np.vstack([a, [0, 0, 1]]), "affine"
    return None, "none"


def _inliers(h: np.ndarray, src: np.ndarray, dst: np.ndarray, threshold: float) -> np.ndarray:
    moved = cv2.perspectiveTransform(src[None].astype(np.float64), h)[0]
    return np.linalg.norm(moved - dst, axis=1) <= threshold


def fit_camera(flow: np.ndarray, texture: np.ndarray, cfg: MaskConfig) -> CameraFit:
    """The camera's motion: of the RANSAC fits to the border-ring samples and to all samples, the one that
    more border samples agree with (ties: more samples overall). Never raises; "none" when nothing fits."""
    shape = flow.shape[:2]
    src, border = _samples(texture, cfg)
    if len(src) < cfg.min_model_points:
        return CameraFit(None, "none", 0.0)
    dst = (src + flow[src[:, 1], src[:, 0]]).astype(np.float32)
    src = src.astype(np.float32)
    best: tuple[tuple[int, int], np.ndarray, str, np.ndarray] | None = None
    for pick in (border, np.ones_like(border)):
        h, model = _ransac(src[pick], dst[pick], shape, cfg)
        if h is None:
            continue
        inliers = _inliers(h, src, dst, cfg.ransac_threshold)
        score = (int(inliers[border].sum()), int(inliers.sum()))
        if best is None or score > best[0]:
            best = (score, h, model, inliers)
        if inliers[border].mean() >= 0.5:  # most of the ring agrees already: the second fit cannot win by much
            break
    if best is None:
        return CameraFit(None, "none", 0.0)
    _, h, model, inliers = best
    return CameraFit(h, model, float(inliers.mean()))


def _corners_leave(matrix: np.ndarray, shape: tuple[int, int]) -> bool:
    """Whether a frame corner maps outside the frame (else, the map being projective, no pixel does)."""
    height, width = shape
    corners = np.array([[[0, 0], [width - 1, 0], [0, height - 1], [width - 1, height - 1]]], np.float64)
    moved = cv2.perspectiveTransform(corners, matrix)[0]
    return bool((moved < 0).any() or (moved[:, 0] > width - 1).any() or (moved[:, 1] > height - 1).any())


@lru_cache(maxsize=8)
def _scaled_grid(height: int, width: int, scale: int) -> np.ndarray:
    """(H, W, 2) float32 full-resolution coordinates of the pixel centres of a 1/``scale`` grid; read-only."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    grid = np.dstack([xs, ys]) * scale + (scale - 1) / 2
    grid.flags.writeable = False
    return grid


def residual_flow(flow: np.ndarray, matrix: np.ndarray | None, scale: int, shape: tuple[int, int]) -> np.ndarray:
    """|flow - camera flow| (px) on a 1/``scale`` grid (``flow`` already downsized, in full-resolution px);
    zero where the camera carries the pixel out of the partner frame (``shape``, full resolution): the flow
    there is guesswork, and nothing says the pixel moves on its own."""
    if matrix is None:
        return cv2.magnitude(flow[..., 0], flow[..., 1])
    height, width = shape
    grid = _scaled_grid(*flow.shape[:2], scale)
    mapped = cv2.perspectiveTransform(grid, matrix.astype(np.float64))
    d = flow + grid - mapped
    residual = cv2.magnitude(d[..., 0], d[..., 1])
    if _corners_leave(matrix, shape):
        residual[cv2.inRange(mapped, (0, 0), (width - 1, height - 1)) == 0] = 0
    return residual


def downsize(image: np.ndarray, scale: int) -> np.ndarray:
    if scale <= 1:
        return image
    height, width = image.shape[:2]
    return cv2.resize(image, (max(1, width // scale), max(1, height // scale)), interpolation=cv2.INTER_AREA)
