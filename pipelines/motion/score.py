"""Scoring motion masks against ground truth: per-frame IoU (DAVIS's J) for the method and the naive baseline.

Which frames are scored: frame t is paired with t + gap; when that frame does not exist (the last
``gap`` frames) or lies across a scene cut (:func:`~pipelines.motion.masks.is_scene_cut`), with t - gap
instead; a frame with neither partner (a shot shorter than gap + 1 frames) is not scored. Either
pairing gives a mask in frame t's pixels.

"All" means every scored frame; "kept" the scored frames that Pathak's frame filter keeps, judged on
the method's own mask (the baseline is scored on the same frames). A sequence's J is the mean over its
frames; the overall J is the mean over sequences, as DAVIS reports it (Perazzi et al., CVPR 2016).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from pipelines.motion.masks import MaskConfig, filter_reason, is_scene_cut, make_flow, mask_from_flow, naive_from_flow
from pipelines.motion.masks import to_gray as _gray

SUMMARY_KEYS = ("j_all", "j_kept", "naive_j_all", "naive_j_kept", "naive_fixed_j_all", "naive_fixed_j_kept")


def iou(pred: np.ndarray, gt: np.ndarray) -> float:
    """Intersection over union of two masks (nonzero = foreground). Two empty masks score 1.0 (nothing to
    find and nothing found is a perfect answer, as in DAVIS's J); one empty and one not score 0.0."""
    pred, gt = np.asarray(pred) > 0, np.asarray(gt) > 0
    union = np.count_nonzero(pred | gt)
    return 1.0 if union == 0 else float(np.count_nonzero(pred & gt) / union)


def partner(t: int, frames: Sequence[np.ndarray], gap: int) -> int | None:
    """t + gap, else t - gap, skipping partners that do not exist or lie across a scene cut; None if neither."""
    for other in (t + gap, t - gap):
        if 0 <= other < len(frames) and not is_scene_cut(frames[t], frames[other]):
            return other
    return None


def score_frame(
    frame: np.ndarray, other: np.ndarray, gt: np.ndarray, cfg: MaskConfig, flow: cv2.DISOpticalFlow
) -> dict[str, Any]:
    """IoU of the method and of the two baselines for one pair (the flow is computed once and shared).

    The naive baselines threshold the flow magnitude with no camera compensation: with the method's own
    adaptive threshold (which scales with the camera's flow, so it finds little under camera motion) and
    with a fixed one (the threshold floor, ``min_residual`` px), which is the stronger of the two there.
    """
    g0, g1 = _gray(frame), _gray(other)
    forward = flow.calc(g0, g1, None)
    backward = flow.calc(g1, g0, None) if cfg.fb_check else None
    result = mask_from_flow(forward, g0, cfg, backward)
    reason = filter_reason(result.stats, cfg)
    return {
        "iou": iou(result.mask, gt),
        "naive_iou": iou(naive_from_flow(forward, g0, cfg), gt),
        "naive_fixed_iou": iou(naive_from_flow(forward, g0, replace(cfg, noise_k=0.0)), gt),
        "gt_share": float(np.count_nonzero(gt) / np.asarray(gt).size),
        "kept": reason is None,
        "reason": reason,
        "stats": result.stats,
    }


def score_sequence(
    frames: Sequence[np.ndarray],
    gt_masks: Sequence[np.ndarray],
    cfg: MaskConfig,
    flow: cv2.DISOpticalFlow | None = None,
) -> dict[str, Any]:
    """Per-frame rows (frame, partner, iou, naive_iou, gt_share, kept, reason, stats) and the sequence's means.

    ``frames`` are RGB uint8 at the working resolution, ``gt_masks`` the same size (nonzero = moving).
    """
    if len(frames) != len(gt_masks):
        raise ValueError(f"{len(frames)} frames but {len(gt_masks)} masks")
    dis = flow if flow is not None else make_flow(cfg)
    rows = []
    for t in range(len(frames)):
        other = partner(t, frames, cfg.gap)
        if other is not None:
            rows.append({"frame": t, "partner": other, **score_frame(frames[t], frames[other], gt_masks[t], cfg, dis)})
    return {"frames": rows, **aggregate_rows(rows)}


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def aggregate_rows(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean J of the method and of the baseline over all scored frames and over kept frames (None if none)."""
    kept = [r for r in rows if r["kept"]]
    return {
        "scored": len(rows),
        "kept": len(kept),
        "j_all": _mean([r["iou"] for r in rows]),
        "j_kept": _mean([r["iou"] for r in kept]),
        "naive_j_all": _mean([r["naive_iou"] for r in rows]),
        "naive_j_kept": _mean([r["naive_iou"] for r in kept]),
        "naive_fixed_j_all": _mean([r["naive_fixed_iou"] for r in rows]),
        "naive_fixed_j_kept": _mean([r["naive_fixed_iou"] for r in kept]),
    }


def overall(sequences: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Means over sequences (each weighs the same); a sequence without kept frames is left out of the kept means."""
    out: dict[str, Any] = {"sequences": len(sequences)}
    for key in SUMMARY_KEYS:
        out[key] = _mean([s[key] for s in sequences.values() if s[key] is not None])
    out["scored"] = sum(s["scored"] for s in sequences.values())
    out["kept"] = sum(s["kept"] for s in sequences.values())
    return out


def load_davis_sequence(frames_dir: Path, masks_dir: Path) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """A DAVIS-layout sequence: ``frames_dir/<name>.jpg`` (RGB) and ``masks_dir/<name>.png`` (nonzero = object),
    paired by name. Raises FileNotFoundError when a frame has no mask (or none are found)."""
    paths = sorted(Path(frames_dir).glob("*.jpg"))
    if not paths:
        raise FileNotFoundError(f"no .jpg frames in {frames_dir}")
    frames, masks = [], []
    for path in paths:
        mask_path = Path(masks_dir) / f"{path.stem}.png"
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        mask = cv2.imread(str(mask_path), cv2.IMREAD_GRAYSCALE)
        if image is None or mask is None:
            raise FileNotFoundError(f"unreadable frame or missing mask: {path} / {mask_path}")
        frames.append(image[..., ::-1].copy())
        masks.append(mask > 0)
    return frames, masks
