"""Scoring motion masks against ground truth: per-frame IoU (DAVIS's J) for the method and the naive baseline.

Which frames are scored: frame t is paired with t + gap; when that frame does not exist (the last
``gap`` frames) or lies across a scene cut, with t - gap instead; a frame with neither partner (a
shot shorter than gap + 1 frames) is not scored. Both pairings give a mask in frame t's pixels.

"All" means every scored frame; "kept" means the scored frames that the frame filter keeps, judged
on the method's own mask (the baseline is scored on the same frames). A sequence's J is the mean
over its frames; the overall J is the mean over sequences, as DAVIS reports it (Perazzi et al. 2016).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

from pipelines.motion.masks import (
    MaskConfig,
    filter_reason,
    is_scene_cut,
    make_flow,
    mask_from_flow,
    naive_from_flow,
    to_gray,
)


def iou(pred: np.ndarray, gt: np.ndarray) -> float:
    """Intersection over union of two masks (nonzero = foreground). Two empty masks score 1.0 (DAVIS's
    convention: nothing to find and nothing found is a perfect answer); one empty and one not scores 0.0."""
    pred, gt = np.asarray(pred) > 0, np.asarray(gt) > 0
    union = np.count_nonzero(pred | gt)
    return 1.0 if union == 0 else float(np.count_nonzero(pred & gt) / union)


def partner(t: int, frames: Sequence[np.ndarray], gap: int) -> int | None:
    """t + gap, else t - gap, skipping partners that do not exist or lie across a scene cut; None if neither."""
    for other in (t + gap, t - gap):
        if 0 <= other < len(frames) and not is_scene_cut(frames[t], frames[other]):
            return other
    return None


def score_sequence(
    frames: Sequence[np.ndarray],
    gt_masks: Sequence[np.ndarray],
    cfg: MaskConfig,
    flow: cv2.DISOpticalFlow | None = None,
) -> dict[str, Any]:
    """Per-frame IoU of the method and the baseline, the filter's verdict, and the sequence's means.

    ``frames`` are RGB uint8 at the working resolution, ``gt_masks`` the same size (nonzero = moving).
    """
    if len(frames) != len(gt_masks):
        raise ValueError(f"{len(frames)} frames but {len(gt_masks)} masks")
    dis = flow if flow is not None else make_flow(cfg)
    rows = []
    for t in range(len(frames)):
        other = partner(t, frames, cfg.gap)
        if other is None:
            continue
        g0, g1 = to_gray(frames[t]), to_gray(frames[other])
        forward = dis.calc(g0, g1, None)
        backward = dis.calc(g1, g0, None) if cfg.fb_check else None
        result = mask_from_flow(forward, g0, cfg, backward)
        reason = filter_reason(result.stats, cfg)
        rows.append(
            {
                "frame": t,
                "partner": other,
                "iou": iou(result.mask, gt_masks[t]),
                "naive_iou": iou(naive_from_flow(forward, g0, cfg), gt_masks[t]),
                "gt_share": float(np.count_nonzero(gt_masks[t]) / np.asarray(gt_masks[t]).size),
                "kept": reason is None,
                "reason": reason,
                "stats": result.stats,
            }
        )
    return {"frames": rows, **aggregate_rows(rows)}


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def aggregate_rows(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean J of the method and of the baseline over all scored frames and over kept frames."""
    kept = [r for r in rows if r["kept"]]
    return {
        "scored": len(rows),
        "kept": len(kept),
        "j_all": _mean([r["iou"] for r in rows]),
        "j_kept": _mean([r["iou"] for r in kept]),
        "naive_j_all": _mean([r["naive_iou"] for r in rows]),
        "naive_j_kept": _mean([r["naive_iou"] for r in kept]),
    }


def overall(sequences: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Means over sequences (each sequence weighs the same); sequences with no kept frame skip the kept means."""
    out: dict[str, Any] = {"sequences": len(sequences)}
    for key in ("j_all", "j_kept", "naive_j_all", "naive_j_kept"):
        out[key] = _mean([s[key] for s in sequences.values() if s[key] is not None])
    out["scored"] = sum(s["scored"] for s in sequences.values())
    out["kept"] = sum(s["kept"] for s in sequences.values())
    return out
