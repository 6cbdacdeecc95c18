"""Which frames a frame is masked against: partner offsets within its shot (scene cuts by histogram), and the
reasons a frame is filtered (partners on one side only, Pathak's foreground filter)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import cv2
import numpy as np

from pipelines.motion.camera import to_gray
from pipelines.motion.config import MaskConfig

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
