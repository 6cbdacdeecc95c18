"""Motion masks from dense optical flow with the camera's own motion removed (Pathak et al. 2017, as adapted).

For frame t and its partners t + d (d in +-``gaps``; forward only unless ``bidirectional``), in frame t's
pixels:

1. DIS optical flow (Kroeger et al. 2016, OpenCV) on the gray frames, one per partner.
2. The camera of each pair: a homography fitted with RANSAC to the flow at textured grid samples (affine
   fallback, then none). Of the fit to all samples and the fit to the samples of the border ring, the one
   more border samples agree with wins: in every frame the filter keeps, the border is mostly background.
3. Each pair's residual flow (flow minus the camera's) divided by its adaptive threshold: ``noise_k``
   times its median over the textured pixels of the border ring, floored at ``min_speed`` pixels per
   frame of the pair's gap. The pairs' evidence is combined (``combine``): the minimum over pairs keeps
   what moves on its own in every pair and drops what only one direction sees -- the pixels the object
   is about to cover (forward flow) or has just uncovered (backward flow), where flow takes the
   occluder's motion.
4. Regions: seeds are textured pixels with evidence over 1 (opened); each region is cut again at
   ``half_max`` of its own level (flow is blurred across motion boundaries). Flat regions, whose flow is
   guesswork, join as a whole when the textured pixels around them are mostly foreground.
5. Clean-up: close, drop small regions, fill enclosed holes, and snap the edges to the image's with a
   guided filter (He, Sun & Tang 2010).
6. Appearance: one GrabCut pass (Rother et al. 2004) on the frame's colours, the mask's eroded core fixed
   as foreground, a band around the mask left open, the rest fixed as background.

Frames arrive already resized to the working resolution (typically 256 px on the shorter side); the
pixel-valued defaults assume it. Defaults marked "tuned" were first tuned on the synthetic benchmark
(``benchmarks/bench_motion_masks.py``); those marked "DAVIS" were measured on the ten real DAVIS-2016
train sequences of ``../shared/data/davis-train`` (``mtssl-data score-motion``; J over all frames, mean
over sequences; docs/benchmarks.md has the ablation). :data:`QUALITY` names the default and a fast
setting (one forward pair, no GrabCut: about 4x the speed, less than half the J on real video).
"""

from __future__ import annotations

from collections.abc import Callable
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
    """Every knob of the mask and of Pathak's frame filter (pixel values assume a 256-px shorter side)."""

    preset: str = "medium"  # ours, DAVIS: DIS preset; "fast": J 0.49 instead of 0.57, 2.2x the speed
    refine_iters: int | None = 2  # ours, DAVIS: DIS variational refinement iterations (None: the preset's 5:
    #   the same J, 25% slower; 0: J 0.55)
    gaps: tuple[int, ...] = (1, 2)  # ours, DAVIS: partner offsets (frames at 25-30 fps); (1,) 0.52, (1, 3) 0.54
    bidirectional: bool = True  # ours, DAVIS: partners before t too; forward only 0.45 (forward (3,): 0.26)
    combine: str = "min"  # ours, DAVIS: "min" over pairs 0.57; "directional" (min over directions of the
    #   max over gaps: keeps an object that pauses for one gap) 0.44
    grid_step: int = 8  # ours: spacing (px) of the flow samples the camera is fitted to (6: same IoU, slower)
    ransac_threshold: float = 1.0  # ours: RANSAC reprojection threshold (px)
    max_model_points: int = 300  # ours: samples a camera fit uses at most (more: slower, same IoU)
    min_model_points: int = 12  # ours: fewer textured samples than this and no camera model is fitted
    min_texture: float = 28.0  # ours, tuned: mean |Sobel| (7x7 box) from which a pixel's flow is evidence
    ring_width: float = 0.15  # ours, tuned: border ring (share of each side) that votes for the camera
    noise_k: float = 4.0  # ours, tuned: threshold = max(min_speed * gap, noise_k * background residual level)
    min_speed: float = 0.6  # ours, DAVIS: floor of the threshold, px of residual flow per frame of the gap;
    #   J 0.57 (synthetic seeds 100-101: 0.83); 0.4: 0.55 (0.88); 0.8: 0.58 (0.76): slow objects need it low
    open_px: int = 5  # ours, tuned: opening kernel of the seeds (removes specks)
    half_max: float = 0.3  # ours, tuned: cut each region at this share of its residual level
    half_max_pct: float = 75.0  # ours: percentile of a region's residual (textured pixels) taken as its level
    flat_vote: float = 0.5  # ours, tuned: flat region joins when more than this share of its rim is foreground
    border_vote: float = 1.0  # ours: weight of a flat region's frame-border pixels, voting background
    close_px: int = 11  # ours, tuned: closing kernel (fills gaps between seeds)
    min_region: float = 0.01  # ours: drop regions smaller than this share of the frame
    fill_holes: bool = True  # ours: fill enclosed holes
    seg_scale: int = 2  # ours: segment at 1/seg_scale resolution (4x cheaper; DIS "medium" flow is half-res)
    guide_radius: int = 8  # ours, tuned: guided-filter radius (px) that snaps edges to the image; 0 = off
    guide_eps: float = 0.01  # ours, tuned: guided-filter regulariser (gray in [0, 1])
    fb_check: bool = False  # ours, DAVIS: drop pixels failing forward-backward consistency: J 0.34, 2x flows
    fb_threshold: float = 1.0  # ours: forward-backward error (px) above which a pixel is unreliable
    grabcut: bool = True  # ours, DAVIS: refine with GrabCut on the frame's colours: J 0.53 -> 0.57
    grabcut_scale: int = 3  # ours, DAVIS: GrabCut at 1/3 resolution; 1/2: the same J, slower
    grabcut_iters: int = 1  # ours, DAVIS: GrabCut iterations (2 and 4: the same J, slower)
    grabcut_core_px: int = 15  # ours, DAVIS: erosion (px) of the mask fixed as foreground; none: J 0.33
    grabcut_band_px: int = 15  # ours, DAVIS: band (px) around the mask GrabCut may claim; 30: -0.01
    grabcut_agree: float = 0.7  # ours: keep the motion mask where GrabCut's agrees less (IoU): colours that
    #   do not tell object from background (random textures) otherwise cost 0.3 IoU
    min_fg: float = 0.03  # ours, DAVIS: drop frames with less foreground than this share (Pathak: 0.10,
    #   which keeps 24% of DAVIS frames, whose objects cover 2-12% of the frame; 0.03 keeps 77%)
    max_fg: float = 0.80  # Pathak: drop frames with more foreground than this share
    border_width: float = 0.05  # Pathak: border band, as a share of each side's length
    max_border_fg: float = 0.10  # Pathak: drop frames whose border band is more foreground than this

    def __post_init__(self) -> None:
        if not self.gaps or min(self.gaps) < 1:
            raise ValueError(f"gaps must be positive frame offsets, got {self.gaps!r}")
        if self.combine not in COMBINE:
            raise ValueError(f"unknown combine {self.combine!r}; choose from {', '.join(COMBINE)}")

    @property
    def max_gap(self) -> int:
        return max(self.gaps)

    def offsets(self) -> list[int]:
        """Partner offsets in order of preference: +1, -1, +2, -2, ... (forward only unless bidirectional)."""
        signs = (1, -1) if self.bidirectional else (1,)
        return [sign * gap for gap in sorted(set(self.gaps)) for sign in signs]


COMBINE = ("min", "directional")


QUALITY = {
    "default": MaskConfig(),
    # the method as it was before it met real video: one forward pair 3 frames on, no appearance step
    "fast": MaskConfig(gaps=(3,), bidirectional=False, grabcut=False, min_speed=0.4),
}


def quality_config(name: str) -> MaskConfig:
    if name not in QUALITY:
        raise ValueError(f"unknown quality {name!r}; choose from {', '.join(QUALITY)}")
    return QUALITY[name]


@dataclass
class MaskResult:
    mask: np.ndarray  # (H, W) uint8, 0 or 255, in the first frame's pixels
    stats: dict[str, Any]  # JSON-able: model, inlier_ratio, fg_share, border_share, residual_level, threshold


@dataclass(frozen=True)
class CameraFit:
    matrix: np.ndarray | None  # 3x3 point transform frame t -> partner, None for "none"
    model: str  # "homography", "affine" or "none"
    inlier_ratio: float  # share of the textured samples within ransac_threshold of the model


# ---- flow ----------------------------------------------------------------------------------------


def make_flow(cfg: MaskConfig) -> cv2.DISOpticalFlow:
    """The DIS flow object; create once per worker and reuse it for every pair."""
    if cfg.preset not in PRESETS:
        raise ValueError(f"unknown DIS preset {cfg.preset!r}; choose from {sorted(PRESETS)}")
    flow = cv2.DISOpticalFlow_create(PRESETS[cfg.preset])
    if cfg.refine_iters is not None:
        flow.setVariationalRefinementIterations(cfg.refine_iters)
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


# ---- camera --------------------------------------------------------------------------------------


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


# ---- segmentation --------------------------------------------------------------------------------


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


# ---- public entry points -------------------------------------------------------------------------


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


def _residual(flow: np.ndarray, matrix: np.ndarray | None, scale: int, shape: tuple[int, int]) -> np.ndarray:
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


def _downsize(image: np.ndarray, scale: int) -> np.ndarray:
    if scale <= 1:
        return image
    height, width = image.shape[:2]
    return cv2.resize(image, (max(1, width // scale), max(1, height // scale)), interpolation=cv2.INTER_AREA)


MIN_SIDE = 16  # DIS needs at least 12 px on a side; smaller frames get an empty mask


@dataclass(frozen=True)
class PairEvidence:
    evidence: np.ndarray  # residual / threshold at 1/seg_scale: above 1 moves on its own
    camera: CameraFit
    level: float  # the background's residual level (px)
    threshold: float  # px


def pair_evidence(
    forward: np.ndarray, texture: np.ndarray, cfg: MaskConfig, gap: int, backward: np.ndarray | None = None
) -> PairEvidence:
    """Steps 2-3 for one pair: camera fit, residual flow over its adaptive threshold (and, with
    ``backward``, zero where the forward-backward check fails)."""
    camera = fit_camera(forward, texture, cfg)
    scale = max(1, cfg.seg_scale)
    residual = _residual(_downsize(forward, scale), camera.matrix, scale, forward.shape[:2])
    if backward is not None:
        unreliable = (fb_error(forward, backward) > cfg.fb_threshold).astype(np.float32)
        residual[_downsize(unreliable, scale) > 0.5] = 0
    threshold, level = threshold_residual(residual, _downsize(texture, scale) >= cfg.min_texture, cfg, gap)
    return PairEvidence(residual / threshold, camera, level, threshold)


def _stats(mask: np.ndarray, pairs: list[PairEvidence], cfg: MaskConfig) -> dict[str, Any]:
    """JSON-able: the first pair's camera model, the worst pair's inlier ratio, the median level and
    threshold over pairs, the number of pairs, and the shares Pathak's filter reads."""
    first = pairs[0] if pairs else PairEvidence(np.zeros(0), CameraFit(None, "none", 0.0), 0.0, cfg.min_speed)
    return {
        "model": first.camera.model,
        "inlier_ratio": round(min((p.camera.inlier_ratio for p in pairs), default=0.0), 4),
        "pairs": len(pairs),
        "fg_share": round(float(np.count_nonzero(mask) / mask.size), 4),
        "border_share": round(border_share(mask, cfg.border_width), 4),
        "residual_level": round(float(np.median([p.level for p in pairs])) if pairs else 0.0, 4),
        "threshold": round(float(np.median([p.threshold for p in pairs])) if pairs else first.threshold, 4),
    }


def mask_from_flows(
    flows: dict[int, np.ndarray],
    frame: np.ndarray,
    cfg: MaskConfig,
    backward: dict[int, np.ndarray] | None = None,
) -> MaskResult:
    """The mask and stats of ``frame`` (RGB, or gray: GrabCut then sees gray) from its flows to its
    partners, keyed by partner offset (+1, -1, ...). ``backward`` holds, per offset, the partner's flow
    back to ``frame`` for the forward-backward check. Use this when the flow is computed (or timed)
    separately."""
    if not flows:
        raise ValueError("no flow: a mask needs at least one partner frame")
    gray = to_gray(frame)
    texture = texture_map(gray)
    backward = backward or {}
    pairs = {d: pair_evidence(f, texture, cfg, abs(d), backward.get(d)) for d, f in flows.items()}
    evidence = combine_evidence({d: p.evidence for d, p in pairs.items()}, cfg.combine)
    mask = segment(evidence, _downsize(texture, max(1, cfg.seg_scale)), gray, cfg)
    if cfg.grabcut:
        mask = grabcut_refine(mask, frame, cfg)
    return MaskResult(mask, _stats(mask, list(pairs.values()), cfg))


def mask_from_flow(
    forward: np.ndarray,
    frame: np.ndarray,
    cfg: MaskConfig,
    backward: np.ndarray | None = None,
    gap: int | None = None,
) -> MaskResult:
    """:func:`mask_from_flows` for one forward pair ``gap`` frames apart (default: the smallest gap)."""
    d = gap or min(cfg.gaps)
    return mask_from_flows({d: forward}, frame, cfg, None if backward is None else {d: backward})


def _empty(shape: tuple[int, ...], cfg: MaskConfig) -> MaskResult:
    empty = np.zeros(shape[:2], np.uint8)
    return MaskResult(empty, _stats(empty, [], cfg))


def motion_mask_at(
    frame: np.ndarray,
    partners: dict[int, np.ndarray],
    cfg: MaskConfig,
    flow: cv2.DISOpticalFlow | None = None,
) -> MaskResult:
    """Mask (in ``frame``'s pixels, uint8 0/255) of what moves on its own around ``frame``, from its
    partner frames keyed by offset (``cfg.offsets()`` says which the method wants; pass those that exist).

    Frames are RGB uint8 (H, W, 3) (gray (H, W) works too) of the same size. Pass ``flow`` from
    :func:`make_flow` to reuse one DIS object. Degenerate input (uniform or identical frames, no camera
    fit) gives an empty or best-effort mask, never an exception.
    """
    if not partners:
        raise ValueError("no partner frame")
    for other in partners.values():
        if frame.shape[:2] != other.shape[:2]:
            raise ValueError(f"frame sizes differ: {frame.shape[:2]} vs {other.shape[:2]}")
    if min(frame.shape[:2]) < MIN_SIDE:
        return _empty(frame.shape, cfg)
    flows, backward = partner_flows(frame, partners, cfg, flow if flow is not None else make_flow(cfg))
    return mask_from_flows(flows, frame, cfg, backward)


def motion_mask(
    frame: np.ndarray,
    later: np.ndarray,
    cfg: MaskConfig,
    flow: cv2.DISOpticalFlow | None = None,
    gap: int | None = None,
) -> MaskResult:
    """:func:`motion_mask_at` with one partner frame, ``later``, ``gap`` frames on (default: the smallest
    of ``cfg.gaps``; it sets the threshold's floor)."""
    return motion_mask_at(frame, {gap or min(cfg.gaps): later}, cfg, flow)


# ---- baselines -----------------------------------------------------------------------------------


def _otsu_segment(magnitude: np.ndarray, gray: np.ndarray, cfg: MaskConfig) -> np.ndarray:
    """``magnitude`` (full resolution) thresholded with Otsu's method, then the method's clean-up (no
    GrabCut): a threshold that adapts to each frame without knowing where the background is."""
    scale = max(1, cfg.seg_scale)
    small = _downsize(magnitude, scale)
    top = float(small.max())
    if top <= 1e-6:
        return np.zeros(gray.shape[:2], np.uint8)
    levels = np.clip(small / top * 255, 0, 255).astype(np.uint8)
    otsu, _ = cv2.threshold(levels, 0, 255, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
    threshold = max((otsu + 0.5) / 255 * top, 1e-6)
    return segment(small / threshold, _downsize(texture_map(gray), scale), gray, cfg)


def naive_from_flow(forward: np.ndarray, gray: np.ndarray, cfg: MaskConfig) -> np.ndarray:
    """Baseline "flow": the flow's magnitude, no camera compensation, Otsu's threshold per frame."""
    return _otsu_segment(cv2.magnitude(forward[..., 0], forward[..., 1]), to_gray(gray), cfg)


def translation_from_flow(forward: np.ndarray, gray: np.ndarray, cfg: MaskConfig) -> np.ndarray:
    """Baseline "translation": the flow minus its median (a camera that only pans), Otsu's threshold."""
    d = forward - np.median(forward.reshape(-1, 2), axis=0)
    return _otsu_segment(cv2.magnitude(d[..., 0], d[..., 1]), to_gray(gray), cfg)


def naive_mask(
    frame: np.ndarray, later: np.ndarray, cfg: MaskConfig, flow: cv2.DISOpticalFlow | None = None
) -> np.ndarray:
    """Baseline: :func:`naive_from_flow` of the flow from ``frame`` to ``later``."""
    if min(frame.shape[:2]) < MIN_SIDE:
        return np.zeros(frame.shape[:2], np.uint8)
    dis = flow if flow is not None else make_flow(cfg)
    g0 = to_gray(frame)
    return naive_from_flow(dis.calc(g0, to_gray(later), None), g0, cfg)


ONE_SIDE = "partners on one side only"


def pairing_reason(offsets: list[int], cfg: MaskConfig) -> str | None:
    """None when a frame's partner offsets let the method work as designed, else why not: with
    ``bidirectional``, a frame at a video's start or end (or next to a cut) has partners on one side
    only, and its mask keeps the occlusion smear the other side would have removed."""
    if cfg.bidirectional and not (any(d > 0 for d in offsets) and any(d < 0 for d in offsets)):
        return ONE_SIDE
    return None


def filter_reason(stats: dict[str, Any], cfg: MaskConfig) -> str | None:
    """Pathak's frame filter on a mask's stats: None keeps the frame, else a short reason."""
    if stats["fg_share"] < cfg.min_fg:
        return f"foreground below {cfg.min_fg:.0%}"
    if stats["fg_share"] > cfg.max_fg:
        return f"foreground above {cfg.max_fg:.0%}"
    if stats["border_share"] > cfg.max_border_fg:
        return "foreground on border"
    return None


CUT_THRESHOLD = 0.5  # ours: the two shots of a cut rarely share a histogram, a pan or zoom keeps it


def _histogram(image: np.ndarray) -> np.ndarray:
    """32-bin gray histogram of a 64-px-wide thumbnail: what the cut detector compares."""
    gray = to_gray(image)
    size = (64, max(1, round(64 * gray.shape[0] / max(1, gray.shape[1]))))
    return cv2.calcHist([cv2.resize(gray, size, interpolation=cv2.INTER_AREA)], [0], None, [32], [0, 256])


def _is_cut(a: np.ndarray, b: np.ndarray, threshold: float) -> bool:
    return bool(cv2.compareHist(a, b, cv2.HISTCMP_CORREL) < threshold)


def is_scene_cut(frame: np.ndarray, later: np.ndarray, threshold: float = CUT_THRESHOLD) -> bool:
    """Cheap cut detector: correlation of the frames' thumbnail histograms below ``threshold``."""
    return _is_cut(_histogram(frame), _histogram(later), threshold)


def partner_offsets(frame: np.ndarray, frame_at: Callable[[int], np.ndarray | None], cfg: MaskConfig) -> list[int]:
    """The offsets of ``cfg.offsets()`` whose frame exists (``frame_at(d)`` is not None) and lies in
    ``frame``'s shot: the one pairing rule of the build and of ``score-motion``."""
    own, found = None, []
    for d in cfg.offsets():
        other = frame_at(d)
        if other is None:
            continue
        own = _histogram(frame) if own is None else own  # frame t's histogram once, not once per partner
        if not _is_cut(own, _histogram(other), CUT_THRESHOLD):
            found.append(d)
    return found


def partner_flows(
    frame: np.ndarray, partners: dict[int, np.ndarray], cfg: MaskConfig, dis: cv2.DISOpticalFlow
) -> tuple[dict[int, np.ndarray], dict[int, np.ndarray] | None]:
    """DIS flow from ``frame`` to each partner (keyed by offset), and back when ``cfg.fb_check``."""
    g0 = to_gray(frame)
    grays = {d: to_gray(other) for d, other in partners.items()}
    flows = {d: dis.calc(g0, g, None) for d, g in grays.items()}
    backward = {d: dis.calc(g, g0, None) for d, g in grays.items()} if cfg.fb_check else None
    return flows, backward
