"""Scoring motion masks against ground truth: per-frame IoU (DAVIS's J), recall and precision, for the
method and two baselines.

Which frames are scored: every frame t with at least one partner t + d (d in ``cfg.offsets()``) that
exists and lies in the same shot (:func:`~pipelines.motion.masks.partner_offsets`); a frame with none (a
shot shorter than the smallest gap + 1 frames) is not scored. The build pairs its frames the same way.

"All" means every scored frame; "kept" the scored frames that the build keeps: those with partners on
both sides (:func:`~pipelines.motion.masks.pairing_reason`) that Pathak's frame filter keeps, judged
on the method's own mask (the baselines are scored on the same frames): what the pretext task trains on.
A frame whose ground truth is empty has nothing to find: it is counted apart (with the share of it the
method marks), never averaged into J, where it would score 1 for an empty mask. A sequence's J is the
mean over its frames; the overall J is the mean over sequences, as DAVIS reports it (Perazzi et al.,
CVPR 2016); a sequence with empty ground truth on every frame is reported apart.

The baselines read the flow to the first partner with no camera model: ``flow`` thresholds its
magnitude, ``translation`` the magnitude of the flow minus its median (a camera that only pans), both
with Otsu's threshold per frame and the method's clean-up.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from mtssl.contract.frames import iou
from pipelines.motion.camera import to_gray as _gray
from pipelines.motion.clip import ClipMasks, FrameMask, frame_mask
from pipelines.motion.config import MaskConfig
from pipelines.motion.masks import MaskResult, naive_from_flow, translation_from_flow
from pipelines.motion.pairing import filter_reason, pairing_reason, partner_offsets

METHODS = ("", "naive_", "translation_")  # key prefixes: the method, the flow baseline, the pan baseline
SUMMARY_KEYS = (
    *(f"{m}j_{part}" for m in METHODS for part in ("all", "kept")),
    "kept_share",
    "recall_kept",
    "precision_kept",
)


def recall_precision(pred: np.ndarray, gt: np.ndarray) -> tuple[float | None, float | None]:
    """Share of the ground truth found, share of the mask that is ground truth (None when undefined)."""
    pred, gt = np.asarray(pred) > 0, np.asarray(gt) > 0
    hit, found, there = np.count_nonzero(pred & gt), np.count_nonzero(pred), np.count_nonzero(gt)
    return (hit / there if there else None), (hit / found if found else None)


def partners(t: int, frames: Sequence[np.ndarray], cfg: MaskConfig) -> dict[int, int]:
    """Offset -> frame index of t's partners: those of ``cfg.offsets()`` that exist and are in t's shot."""
    found = partner_offsets(frames[t], lambda d: frames[t + d] if 0 <= t + d < len(frames) else None, cfg)
    return {d: t + d for d in found}


def score_frame(
    frame: np.ndarray, others: dict[int, np.ndarray], gt: np.ndarray, cfg: MaskConfig, flow: cv2.DISOpticalFlow
) -> dict[str, Any]:
    """Scores of the method (its per-frame mask: no clip vote) and of the two baselines for one frame and its
    partners (flows computed once)."""
    own = frame_mask(frame, others, cfg, flow)
    return score_masks(frame, own, own.result, gt, cfg)


def score_masks(frame: np.ndarray, own: FrameMask, result: MaskResult, gt: np.ndarray, cfg: MaskConfig) -> dict:
    """Scores of ``result`` (the method's mask of ``frame``) and of the two baselines, which read the first
    partner flow of ``own`` (the frame's per-frame mask and flows)."""
    g0 = _gray(frame)
    first = own.flows[next(iter(own.flows))] if own.flows else np.zeros((*g0.shape[:2], 2), np.float32)
    recall, precision = recall_precision(result.mask, gt)
    gt_share = float(np.count_nonzero(gt) / np.asarray(gt).size)
    reason = pairing_reason(list(own.flows), cfg) or filter_reason(result.stats, cfg)
    return {
        "iou": iou(result.mask, gt),
        "recall": recall,
        "precision": precision,
        "naive_iou": iou(naive_from_flow(first, g0, cfg), gt),
        "translation_iou": iou(translation_from_flow(first, g0, cfg), gt),
        "gt_share": gt_share,
        "gt_empty": gt_share == 0.0,
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
    """Per-frame rows (frame, partners, iou, recall, precision, baselines, gt_share, gt_empty, kept, reason,
    stats) and the sequence's aggregates. ``frames`` are RGB uint8 at the working resolution, ``gt_masks``
    the same size (nonzero = moving). Masks as the build makes them (:class:`~pipelines.motion.clip.ClipMasks`:
    with ``clip_radius``, the vote of the frames around each), each frame's per-frame mask computed once."""
    if len(frames) != len(gt_masks):
        raise ValueError(f"{len(frames)} frames but {len(gt_masks)} masks")
    clip = ClipMasks(cfg, lambda i: frames[i] if 0 <= i < len(frames) else None, flow)
    rows = []
    for t in range(len(frames)):
        found = partners(t, frames, cfg)
        if found:
            result = clip.mask_at(t)
            row = score_masks(frames[t], clip.per_frame(t), result, gt_masks[t], cfg)
            rows.append({"frame": t, "partners": list(found.values()), **row})
    return {"frames": rows, **aggregate_rows(rows)}


def _mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return float(np.mean(present)) if present else None


def aggregate_rows(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """J of the method and the baselines over all scored frames and over kept frames, the kept frames'
    recall and precision, and the frames with empty ground truth apart (None where there is no frame)."""
    empty = [r for r in rows if r.get("gt_empty")]
    rows = [r for r in rows if not r.get("gt_empty")]
    kept = [r for r in rows if r["kept"]]
    out: dict[str, Any] = {"scored": len(rows), "kept": len(kept)}
    out["kept_share"] = len(kept) / len(rows) if rows else None
    for m in METHODS:
        out[f"{m}j_all"] = _mean([r[f"{m}iou"] for r in rows])
        out[f"{m}j_kept"] = _mean([r[f"{m}iou"] for r in kept])
    out["recall_kept"] = _mean([r.get("recall") for r in kept])
    out["precision_kept"] = _mean([r.get("precision") for r in kept])
    out["empty_gt_frames"] = len(empty)
    out["empty_gt_fg_share"] = _mean([r["stats"]["fg_share"] for r in empty])
    return out


def overall(sequences: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Means over the sequences with ground truth (each weighs the same; one without kept frames is left
    out of the kept means); counts summed; sequences whose ground truth is empty on every frame apart."""
    scored = {name: s for name, s in sequences.items() if s["scored"]}
    out: dict[str, Any] = {"sequences": len(scored)}
    for key in SUMMARY_KEYS:
        out[key] = _mean([s[key] for s in scored.values()])
    for key in ("scored", "kept", "empty_gt_frames"):
        out[key] = sum(s[key] for s in sequences.values())
    out["kept_share_frames"] = out["kept"] / out["scored"] if out["scored"] else None
    out["empty_gt_fg_share"] = _mean([s["empty_gt_fg_share"] for s in sequences.values()])
    out["empty_gt_sequences"] = sorted(name for name, s in sequences.items() if not s["scored"])
    return out


def load_davis_sequence(frames_dir, masks_dir) -> tuple[list[np.ndarray], list[np.ndarray]]:
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
