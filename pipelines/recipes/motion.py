"""Motion segmentation (Pathak et al., CVPR 2017): frames of real videos with masks of what moves.

A video recipe (``pipelines.units.videos`` decodes the segments): every ``stride``-th frame t is masked
against its partners t + d for d in the mask's offsets (+-1, +-2 by default) that exist and lie in t's
shot, by :func:`pipelines.motion.masks.motion_mask_at`: the pixels that move on their own; with the
mask's ``clip_radius`` (the ``clip`` quality), the masks of the frames around t vote on its mask
(:mod:`pipelines.motion.clip`), and the segment decodes that many more frames on each side. A frame ends as
a sample, or is filtered with its reason (scene cut on every side, Pathak's foreground filter, no partner
at all). ``score-motion`` masks its frames with the same :class:`~pipelines.motion.clip.ClipMasks`, so it
measures what the build stores.

Stored per sample: ``rgb.jpg`` the frame, ``mask.png`` the 8-bit motion mask (0 or 255), ``json``
per-frame stats.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from mtssl.contract import encode_jpeg, encode_png
from pipelines.drawing import hstack, label
from pipelines.errors import Filtered
from pipelines.motion.camera import make_flow
from pipelines.motion.clip import ClipMasks, FrameMask
from pipelines.motion.config import QUALITY, QUALITY_HELP, MaskConfig
from pipelines.motion.pairing import filter_reason, pairing_reason, partner_offsets
from pipelines.recipes.base import Recipe, RecipeOutput, Variants
from pipelines.videos import Frame


@dataclass(frozen=True)
class MotionRecipeConfig:
    # What the trainer may rely on (the manifest's ``declared`` block): declared name -> config field.
    DECLARED: ClassVar[dict[str, str]] = {"frame_side": "size"}

    size: int = 256  # working resolution: frames are resized to this shorter side, in px (Pathak et al. train
    #   on 256-px frames)
    stride: int = 5  # mask every Nth frame: neighbouring frames are near duplicates
    max_frames: int | None = 200  # at most this many masked frames per video
    segment_frames: int = 500  # frames per segment of a video; each segment is one Ray task
    min_source_side: int = 64  # reject videos whose shorter side is smaller than this, in px, as too small
    jpeg_quality: int = 95  # JPEG quality of the stored frames, 1-100
    mask: MaskConfig = field(default_factory=MaskConfig)

    def __post_init__(self) -> None:
        for name in ("stride", "segment_frames", "size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.max_frames is not None and self.max_frames < 1:
            raise ValueError(f"max_frames must be at least 1, got {self.max_frames}")

    @property
    def frame_limit(self) -> int | None:
        """Frame indices a video contributes: ``max_frames`` considered frames, ``stride`` apart."""
        return None if self.max_frames is None else self.max_frames * self.stride

    @property
    def reach(self) -> int:
        """Frames a considered frame needs decoded on each side of it: its farthest partner, and with the
        clip's vote the partners of the farthest voting frame."""
        return self.mask.reach


class MotionState:
    """What one shard's frames share: the DIS flow object and, for the clip's vote, the per-frame masks of
    the last frames masked (a considered frame's voters are often the previous one's too). Entries are keyed
    by the decoded frame array itself, held here so that its id is not reused: a frame decoded again (another
    segment, another video) is a new array, and never matches."""

    def __init__(self, cfg: MaskConfig) -> None:
        self.dis = make_flow(cfg)
        self.size = 4 * cfg.reach + 4
        self.frames: OrderedDict[int, tuple[np.ndarray, FrameMask]] = OrderedDict()

    def recall(self, rgb: np.ndarray) -> FrameMask | None:
        hit = self.frames.get(id(rgb))
        return hit[1] if hit is not None and hit[0] is rgb else None

    def remember(self, rgb: np.ndarray, masks: FrameMask) -> None:
        self.frames[id(rgb)] = (rgb, masks)
        self.frames.move_to_end(id(rgb))
        while len(self.frames) > self.size:
            self.frames.popitem(last=False)


def frame_mask_result(frame: Frame, window: dict[int, Frame], cfg: MaskConfig, state: MotionState):
    """``frame``'s mask (:class:`~pipelines.motion.clip.ClipMasks`) from the decoded frames within reach of it,
    reusing the per-frame masks ``state`` holds for the same decoded frames."""
    near = {i: f.rgb for i, f in window.items() if abs(i - frame.index) <= cfg.reach}
    clip = ClipMasks(cfg, near.get, state.dis, keep=None)
    if cfg.clip_radius > 0:
        for i, rgb in near.items():
            known = state.recall(rgb)
            if known is not None:
                clip.seed(i, known)
    result = clip.mask_at(frame.index)
    if cfg.clip_radius > 0:
        for i, masks in clip.computed().items():
            state.remember(near[i], masks)
    return result


def partner_frames(frame: Frame, window: dict[int, Frame], cfg: MaskConfig) -> dict[int, Frame]:
    """Offset -> decoded frame of ``frame``'s partners that exist and lie in its shot."""

    def rgb_at(d: int):
        other = window.get(frame.index + d)
        return None if other is None else other.rgb

    return {d: window[frame.index + d] for d in partner_offsets(frame.rgb, rgb_at, cfg)}


def make_sample(frame: Frame, window: dict[int, Frame], cfg: MotionRecipeConfig, state: Any) -> RecipeOutput:
    """Mask one considered frame against its partners in ``window``; ``Filtered`` when it has none or the
    mask fails the foreground filter."""
    found = partner_frames(frame, window, cfg.mask)
    if not found:
        near = [frame.index + d for d in cfg.mask.offsets() if frame.index + d in window]
        raise Filtered("scene cut" if near else "no partner frame (video too short)")
    one_side = pairing_reason(list(found), cfg.mask)
    if one_side is not None:  # the first and last frames of a video, the frames beside a cut
        raise Filtered(one_side)
    result = frame_mask_result(frame, window, cfg.mask, state)
    reason = filter_reason(result.stats, cfg.mask)
    if reason is not None:
        raise Filtered(reason, result.stats)
    params = {
        "time": None if frame.time is None else round(frame.time, 4),
        "partners": [p.index for p in found.values()],
        **result.stats,
    }
    fields = {"rgb.jpg": encode_jpeg(frame.rgb, cfg.jpeg_quality), "mask.png": encode_png(result.mask)}
    return RecipeOutput(fields=fields, params=params)


def preview_row(sample: dict) -> np.ndarray:
    frame, mask = sample["rgb.jpg"], sample["mask.png"] > 127
    overlay = frame.copy()
    overlay[mask] = (0.5 * overlay[mask] + 0.5 * np.array([255, 0, 0])).astype(np.uint8)
    return hstack([frame, label(overlay, "motion mask")])


RECIPE = Recipe(
    name="motion",
    config_type=MotionRecipeConfig,
    source="videos",
    fields=("rgb.jpg", "mask.png"),
    make_sample=make_sample,
    preview_row=preview_row,
    setup=lambda cfg: MotionState(cfg.mask),
    variants=Variants(
        option="quality",
        help=f"Motion mask settings to start from: {QUALITY_HELP}; the mask options below override its values.",
        configs={name: MotionRecipeConfig(mask=mask) for name, mask in QUALITY.items()},
    ),
)
