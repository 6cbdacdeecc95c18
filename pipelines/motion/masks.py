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
7. Across the clip (``clip_radius`` > 0; :mod:`pipelines.motion.clip`): the per-frame masks of the frames
   around t, carried into t along the flow, vote on t's mask.

Frames arrive already resized to the working resolution (typically 256 px on the shorter side); the
pixel-valued defaults assume it. Defaults marked "tuned" were first tuned on the synthetic benchmark
(``benchmarks/bench_motion_masks.py``); those marked "DAVIS" were measured on the ten real DAVIS-2016
train sequences of ``../shared/data/davis-train`` (``mtssl-data score-motion``; J over all frames, mean
over sequences; docs/benchmarks.md has the ablation). :data:`QUALITY` names the default, a fast
setting (one forward pair, no GrabCut: about 4x the speed, less than half the J on real video), ``fine``
(flow and GrabCut at full resolution) and ``clip`` (``fine`` with step 7); docs/motion-masks.md has their
J, cross-validated over the 30 DAVIS-2016 train sequences, and their cost.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from pipelines.motion.camera import (
    CameraFit,
    downsize,
    fb_error,
    fit_camera,
    make_flow,
    residual_flow,
    texture_map,
    to_gray,
)
from pipelines.motion.config import MaskConfig
from pipelines.motion.pairing import partner_flows
from pipelines.motion.regions import border_share, combine_evidence, grabcut_refine, segment, threshold_residual


@dataclass
class MaskResult:
    mask: np.ndarray  # (H, W) uint8, 0 or 255, in the first frame's pixels
    stats: dict[str, Any]  # JSON-able: model, inlier_ratio, fg_share, border_share, residual_level, threshold


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
    residual = residual_flow(downsize(forward, scale), camera.matrix, scale, forward.shape[:2])
    if backward is not None:
        unreliable = (fb_error(forward, backward) > cfg.fb_threshold).astype(np.float32)
        residual[downsize(unreliable, scale) > 0.5] = 0
    threshold, level = threshold_residual(residual, downsize(texture, scale) >= cfg.min_texture, cfg, gap)
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
    mask = segment(evidence, downsize(texture, max(1, cfg.seg_scale)), gray, cfg)
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


def _otsu_segment(magnitude: np.ndarray, gray: np.ndarray, cfg: MaskConfig) -> np.ndarray:
    """``magnitude`` (full resolution) thresholded with Otsu's method, then the method's clean-up (no
    GrabCut): a threshold that adapts to each frame without knowing where the background is."""
    scale = max(1, cfg.seg_scale)
    small = downsize(magnitude, scale)
    top = float(small.max())
    if top <= 1e-6:
        return np.zeros(gray.shape[:2], np.uint8)
    levels = np.clip(small / top * 255, 0, 255).astype(np.uint8)
    otsu, _ = cv2.threshold(levels, 0, 255, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
    threshold = max((otsu + 0.5) / 255 * top, 1e-6)
    return segment(small / threshold, downsize(texture_map(gray), scale), gray, cfg)


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
