"""Evidence across the clip: each frame's mask is decided by a vote of the per-frame masks of the frames
around it, carried into its pixels along the optical flow (step 7 of :mod:`pipelines.motion.masks`).

For frame t and every frame t + k of its shot with 0 < |k| <= ``clip_radius``:

1. frame t + k gets its own per-frame mask (steps 1-6, against its own partners), computed once per frame
   and shared by every frame whose vote it joins;
2. the flow from t to t + k: the partner flow where t + k is a partner of t, else chained through the
   partners' flows (t -> t + 2 -> t + 4 ...; a missing link, such as a scene cut, ends the chain);
3. that mask is warped into frame t along the flow. A pixel of t is foreground when the share of the
   frames that see it (t itself, and each t + k whose flow keeps it inside the frame) that call it
   foreground exceeds ``clip_vote``.

What one frame gets wrong the others rarely repeat: regions that flicker in and out (a patch of water, a
shadow, a textureless stretch of road), a pause in the object's motion that leaves one frame's flow with
nothing to see, the occlusion smear at one side of the object. The vote needs the frames within
``clip_radius + max(gaps)`` of t and nothing else (:attr:`MaskConfig.reach`): long videos are processed
segment by segment with that many frames decoded on each side, and a mask never depends on where a
segment starts. With ``clip_radius`` 0 the vote is off and the mask is the per-frame mask.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from pipelines.motion.camera import _pixel_grid, make_flow
from pipelines.motion.config import MaskConfig
from pipelines.motion.masks import MIN_SIDE, MaskResult, _empty, mask_from_flows
from pipelines.motion.pairing import partner_flows, partner_offsets
from pipelines.motion.regions import border_share


@dataclass
class FrameMask:
    """A frame's per-frame mask (steps 1-6) and the flows to its partners, keyed by offset."""

    result: MaskResult
    flows: dict[int, np.ndarray]
    backward: dict[int, np.ndarray] | None = None


def frame_mask(
    frame: np.ndarray, partners: dict[int, np.ndarray], cfg: MaskConfig, dis: cv2.DISOpticalFlow
) -> FrameMask:
    """Steps 1-6 for one frame against its partner frames (keyed by offset), keeping the flows."""
    if min(frame.shape[:2]) < MIN_SIDE or not partners:
        return FrameMask(_empty(frame.shape, cfg), {})
    flows, backward = partner_flows(frame, partners, cfg, dis)
    return FrameMask(mask_from_flows(flows, frame, cfg, backward), flows, backward)


def warp(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """``image`` (in the partner's pixels) pulled into the pixels the flow starts from; 0 outside."""
    grid = _pixel_grid(*flow.shape[:2]) + flow
    return cv2.remap(image, grid, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def compose(first: np.ndarray, then: np.ndarray) -> np.ndarray:
    """The flow a -> c from the flows a -> b (``first``) and b -> c (``then``)."""
    grid = _pixel_grid(*first.shape[:2]) + first
    carried = cv2.remap(then, grid, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return first + carried


class ClipMasks:
    """The masks of the frames of one video around the frames asked for, each frame's per-frame mask computed
    once: ``frame_at(i)`` gives frame i (RGB or gray, all one size), or None where there is none (before the
    video's start, past its end, outside the decoded window). Frames are asked for in increasing order (in
    any order when ``keep`` is None); per-frame masks more than ``reach`` behind the last frame asked for are
    forgotten, so memory stays bounded by the window."""

    def __init__(
        self,
        cfg: MaskConfig,
        frame_at: Callable[[int], np.ndarray | None],
        dis: cv2.DISOpticalFlow | None = None,
        keep: int | None = 0,
    ) -> None:
        self.cfg, self.frame_at = cfg, frame_at
        self.dis = dis if dis is not None else make_flow(cfg)
        self.keep = keep
        self._cache: OrderedDict[int, FrameMask] = OrderedDict()

    def partners(self, i: int) -> dict[int, np.ndarray]:
        """Offset -> partner frame of frame ``i``: those of ``cfg.offsets()`` that exist and lie in its shot."""
        frame = self.frame_at(i)
        if frame is None:
            return {}
        found = partner_offsets(frame, lambda d: self.frame_at(i + d), self.cfg)
        return {d: self.frame_at(i + d) for d in found}

    def per_frame(self, i: int) -> FrameMask:
        """Frame ``i``'s own mask and its partner flows (an empty mask and no flow when it has no partner)."""
        if i not in self._cache:
            frame = self.frame_at(i)
            if frame is None:
                raise KeyError(f"frame {i} is not in the window")
            self._cache[i] = frame_mask(frame, self.partners(i), self.cfg, self.dis)
        return self._cache[i]

    def seed(self, i: int, masks: FrameMask) -> None:
        """Use ``masks`` as frame ``i``'s per-frame mask (computed before for the same frame and partners)."""
        self._cache[i] = masks

    def computed(self) -> dict[int, FrameMask]:
        """The per-frame masks held now, by frame index."""
        return dict(self._cache)

    def _forget(self, t: int) -> None:
        if self.keep is None:
            return
        low = t - self.cfg.reach - self.keep
        for i in [i for i in self._cache if i < low]:
            del self._cache[i]

    def flows_from(self, t: int) -> dict[int, np.ndarray]:
        """Offset k -> flow from frame t to frame t + k for 0 < |k| <= ``clip_radius``, where a chain of
        partner flows reaches it: direct when t + k is a partner of t, else the longest partner step from
        the nearest frame already reached on that side."""
        reached = dict(self.per_frame(t).flows)
        for sign in (1, -1):
            for k in range(1, self.cfg.clip_radius + 1):
                d = sign * k
                if d in reached:
                    continue
                for gap in sorted(self.cfg.gaps, reverse=True):
                    start = d - sign * gap
                    if gap >= k or start not in reached:
                        continue
                    step = self.per_frame(t + start).flows.get(sign * gap)
                    if step is not None:
                        reached[d] = compose(reached[start], step)
                        break
        return {d: f for d, f in reached.items() if 0 < abs(d) <= self.cfg.clip_radius}

    def mask_at(self, t: int) -> MaskResult:
        """Frame t's mask: the per-frame mask, or with ``clip_radius`` the vote of the frames around it."""
        self._forget(t)
        own = self.per_frame(t)
        if self.cfg.clip_radius <= 0 or not own.flows:
            return own.result
        return vote(own, {d: (self.per_frame(t + d).result.mask, f) for d, f in self.flows_from(t).items()}, self.cfg)


def vote(own: FrameMask, others: dict[int, tuple[np.ndarray, np.ndarray]], cfg: MaskConfig) -> MaskResult:
    """Frame t's mask from its own (``own``) and the masks of other frames with the flow from t to each
    (``others``: offset -> (mask, flow)): foreground where more than ``clip_vote`` of the frames that see the
    pixel say so. Stats are the own mask's, with the shares of the new mask and ``votes`` frames besides t."""
    mask = own.result.mask
    total = (mask > 0).astype(np.float32)
    seen = np.ones_like(total)
    for other, flow in others.values():
        total += warp((other > 0).astype(np.float32), flow)
        seen += warp(np.ones_like(total), flow)
    voted = cv2.compare(total, cfg.clip_vote * seen, cv2.CMP_GT)
    stats = {
        **own.result.stats,
        "votes": len(others),
        "fg_share": round(float(np.count_nonzero(voted) / voted.size), 4),
        "border_share": round(border_share(voted, cfg.border_width), 4),
    }
    return MaskResult(voted, stats)


def clip_mask_at(
    t: int, frame_at: Callable[[int], np.ndarray | None], cfg: MaskConfig, dis: cv2.DISOpticalFlow | None = None
) -> MaskResult:
    """Frame t's mask with the clip's evidence, from the frames ``frame_at`` gives (None where none): what the
    build stores for a considered frame. Each call computes the per-frame masks it needs afresh; use one
    :class:`ClipMasks` to share them between frames."""
    return ClipMasks(cfg, frame_at, dis).mask_at(t)
