"""Motion segmentation (Pathak et al., CVPR 2017): frames of real videos with masks of what moves.

A work unit is one segment of one video. Its frames are decoded in order at the working resolution;
every ``stride``-th frame t is masked against its partners t + d for d in the mask's offsets (+-1, +-2
by default) that exist and lie in t's shot, by :func:`pipelines.motion.masks.motion_mask_at`: the
pixels that move on their own. Each considered frame ends as a sample, or as a filtered row with its
reason (scene cut on every side, Pathak's foreground filter, no partner at all); a video that cannot be
read is rejected. :func:`pipelines.motion.score.partners` pairs frames the same way, so
``score-motion`` measures what the build stores.
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mtssl.contract import encode_jpeg, encode_json, encode_png, sample_key
from pipelines.errors import Reject
from pipelines.motion.masks import (
    MaskConfig,
    filter_reason,
    make_flow,
    motion_mask_at,
    pairing_reason,
    partner_offsets,
)
from pipelines.recipes.base import RecipeOutput, from_plain
from pipelines.shardjob import ShardResult, internal_error, label_of
from pipelines.sources import display_name
from pipelines.videos import Frame, VideoSource, iter_frames, probe


@dataclass(frozen=True)
class MotionConfig:
    size: int = 256  # working resolution (shorter side); Pathak trains at 256-px frames
    stride: int = 5  # ours: every 5th frame, as neighbouring frames are near duplicates
    max_frames: int | None = 200  # ours: at most this many considered frames per video
    segment_frames: int = 500  # ours: frame indices per segment (one Ray task each)
    min_source_side: int = 64  # ours: smaller videos are rejected as too small
    jpeg_quality: int = 95
    mask: MaskConfig = field(default_factory=MaskConfig)

    @property
    def frame_limit(self) -> int | None:
        """Frame indices a video contributes: ``max_frames`` considered frames, ``stride`` apart."""
        return None if self.max_frames is None else self.max_frames * self.stride


@dataclass
class SegmentContext:
    cfg: MotionConfig
    unit: dict[str, Any]
    shard: int
    result: ShardResult
    flow: Any
    info: Any

    @property
    def source(self) -> str:
        return self.unit["source"]

    def filtered(self, frame: Frame, reason: str, stats: dict[str, Any] | None = None) -> None:
        detail = json.dumps(stats, sort_keys=True) if stats else ""
        self.result.reject(self.source, self.shard, reason, detail, frame=frame.index, kind="filtered")


def sample_of(frame: Frame, partners: list[Frame], mask, stats: dict[str, Any], ctx: SegmentContext) -> RecipeOutput:
    params = {
        "source": ctx.source,
        "frame": frame.index,
        "time": None if frame.time is None else round(frame.time, 4),
        "partners": [p.index for p in partners],
        **stats,
    }
    quality = ctx.cfg.jpeg_quality
    fields = {
        "rgb.jpg": encode_jpeg(frame.rgb, quality),
        "mask.png": encode_png(mask),
        "json": encode_json(params),
    }
    return RecipeOutput(fields=fields, params=params)


def partner_frames(frame: Frame, window: dict[int, Frame], cfg: MaskConfig) -> dict[int, Frame]:
    """Offset -> decoded frame of ``frame``'s partners that exist and lie in its shot."""

    def rgb_at(d: int):
        other = window.get(frame.index + d)
        return None if other is None else other.rgb

    return {d: window[frame.index + d] for d in partner_offsets(frame.rgb, rgb_at, cfg)}


def emit(frame: Frame, window: dict[int, Frame], ctx: SegmentContext) -> None:
    """Mask one considered frame against its partners: a sample, or a filtered row."""
    found = partner_frames(frame, window, ctx.cfg.mask)
    if not found:
        near = [frame.index + d for d in ctx.cfg.mask.offsets() if frame.index + d in window]
        ctx.filtered(frame, "scene cut" if near else "no partner frame (video too short)")
        return
    one_side = pairing_reason(list(found), ctx.cfg.mask)
    if one_side is not None:  # the first and last frames of a video, the frames beside a cut
        ctx.filtered(frame, one_side)
        return
    result = motion_mask_at(frame.rgb, {d: f.rgb for d, f in found.items()}, ctx.cfg.mask, ctx.flow)
    reason = filter_reason(result.stats, ctx.cfg.mask)
    if reason is not None:
        ctx.filtered(frame, reason, result.stats)
        return
    output = sample_of(frame, list(found.values()), result.mask, result.stats, ctx)
    row = {
        "shard": ctx.shard,
        "source": ctx.source,
        "label": label_of(ctx.source),
        "source_mode": ctx.unit["kind"],
        "width": ctx.info.width,
        "height": ctx.info.height,
    }
    ctx.result.add(sample_key(ctx.source, f"_f{frame.index:06d}"), output, {**row, "frame": frame.index})


def process_segment(root: Path, video: VideoSource, ctx: SegmentContext) -> None:
    """Decode the segment's frames and the ``max_gap`` frames on each side of it; mask every considered
    frame once the frames ``max_gap`` after it are decoded (or the video has ended)."""
    start, stop, cfg = ctx.unit["start"], ctx.unit["stop"], ctx.cfg
    reach = cfg.mask.max_gap
    recent: deque[Frame] = deque()  # decoded frames within reach of a frame still to be masked
    pending: deque[Frame] = deque()  # considered frames waiting for their later partners
    decoded = 0

    def flush(until: int | None) -> None:
        window = {f.index: f for f in recent}
        while pending and (until is None or until >= pending[0].index + reach):
            emit(pending.popleft(), window, ctx)

    for frame in iter_frames(root, video, max(0, start - reach), stop + reach, cfg.size):
        decoded += 1
        recent.append(frame)
        flush(frame.index)
        if start <= frame.index < stop and frame.index % cfg.stride == 0:
            pending.append(frame)
        while recent and recent[0].index < (pending[0].index if pending else frame.index + 1) - reach:
            recent.popleft()
    if decoded == 0 and start == 0:
        raise Reject("no frames", "the video stream holds no decodable frame")
    flush(None)


def process_segments(config: dict[str, Any], root: Path, shard: int, units: list[dict[str, Any]]) -> ShardResult:
    """Every segment of the shard; a bad video becomes a reject row, never an exception."""
    cfg = from_plain(MotionConfig, config["recipe"])
    result, flow = ShardResult(), make_flow(cfg.mask)
    for unit in units:
        video = VideoSource(unit["source"], unit["kind"], tuple(unit.get("frames", ())))
        try:
            info = probe(root, video)
            if min(info.width, info.height) < cfg.min_source_side:
                raise Reject("too small", f"{info.width}x{info.height}, shorter side below {cfg.min_source_side}")
            process_segment(root, video, SegmentContext(cfg, unit, shard, result, flow, info))
        except Reject as exc:
            source = display_name(video.relpath)
            result.reject(source, shard, exc.reason, exc.detail, frame=unit["start"] if unit["start"] else -1)
        except Exception as exc:  # a bug must not stop the build: record it with its trace
            result.reject(
                display_name(video.relpath), shard, "internal error", internal_error(exc), frame=unit["start"]
            )
    shuffle_samples(result, np.random.default_rng([config["seed"], shard]))
    return result


def shuffle_samples(result: ShardResult, rng: np.random.Generator) -> None:
    """Pre-shuffle a shard's samples, so consecutive frames of one video do not sit together."""
    order = rng.permutation(len(result.samples))
    result.samples = [result.samples[i] for i in order]
    result.index_rows = [result.index_rows[i] for i in order]
