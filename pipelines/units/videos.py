"""Video work units: one segment of one video each (a file, or a folder of frames).

Planning probes every video (no frame decoding), splits long ones into segments of ``segment_frames``
frame indices (one Ray task each) and packs segments into shards by the frames they will consider.
Running a segment decodes its frames in order at the recipe's working size, and the ``reach`` frames on
each side of it; every ``stride``-th frame is handed to the recipe with the decoded frames around it once
the frames ``reach`` after it are decoded (or the video has ended). A frame ends as a sample, or as a
filtered row with its reason; a video that cannot be read is rejected. A damaged frame (``Frame.damage``:
marked corrupt by the decoder, undecodable, predicted from such a frame) is filtered before the recipe sees
it, and so is a frame with a damaged frame within ``reach`` (a partner the recipe could pick).

A video recipe's config has ``size``, ``stride``, ``frame_limit``, ``segment_frames``, ``min_source_side``
and ``reach``; its per-sample function is ``make_sample(frame, window, cfg, state)`` with ``window`` the
decoded frames by index and ``state`` what ``recipe.setup(cfg)`` made for the shard.
"""

from __future__ import annotations

import json
import math
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np

from mtssl.contract import encode_json, sample_key
from pipelines.errors import Filtered, InputVanished, Reject
from pipelines.plan import order_sources, pack_bounds
from pipelines.recipes.base import Recipe, parsed_config
from pipelines.shard_result import ShardResult, internal_error, label_of
from pipelines.sources import content_digest, display_name, file_stats, inputs_hash
from pipelines.units.base import PlanRequest, Units
from pipelines.videos import OPEN_END, Frame, VideoInfo, VideoSource, iter_frames, list_video_tree, probe, segments


def plan(recipe: Recipe, request: PlanRequest) -> Units:
    """The segments of every video in the seeded order, packed into shards of about ``samples_per_shard``."""
    from pipelines.progress import make_progress  # the driver plans; build workers need not import rich

    listed = {s.relpath: s for s in list_video_tree(request.root)}
    order = order_sources(list(listed), request.seed, request.limit)
    units: list[dict[str, Any]] = []
    with make_progress(disable=not request.show_progress) as progress:
        for relpath in progress.track(order, description="probe videos"):
            units.extend(video_units(request.root, listed[relpath], request.cfg))
    weights = [expected_samples(u, request.cfg, request.samples_per_shard) for u in units]
    stats = {relpath: video_stats(request.root, listed[relpath]) for relpath in order}
    unit_stats = [stats[u["source"]] for u in units]
    digests = None
    if request.rehash:
        by_video = {r: content_digest(request.root, frame_paths(listed[r])) for r in order}
        digests = [by_video[u["source"]] for u in units]
    return Units(
        units=units,
        bounds=pack_bounds(weights, request.samples_per_shard),
        inputs=len(order),
        inputs_hash=inputs_hash([json.dumps(u, sort_keys=True) for u in units], unit_stats, digests),
        unit_name="segment",
        config_extra={"source_kind": "videos"},
        input_stats=unit_stats,
        input_digests=digests,
    )


def frame_paths(source: VideoSource) -> list[str]:
    """The files a video is read from: the file itself, or each frame of a frame folder."""
    return [f"{source.relpath}/{frame}" for frame in source.frames] or [source.relpath]


def video_stats(root: Path, source: VideoSource) -> tuple[int, int]:
    """(size, modification time in ns) of a video file; for a folder of frames, the frames' total size and
    latest time, so an edited, added or removed frame changes it. (-1, -1) when it vanished."""
    folder = Path(root) / source.relpath
    stats = file_stats(Path(root), frame_paths(source)) if folder.exists() else [(-1, -1)]
    if any(size < 0 for size, _ in stats):
        return (-1, -1)
    return sum(size for size, _ in stats), max(mtime for _, mtime in stats)


def video_units(root: Path, source: VideoSource, cfg: Any) -> list[dict[str, Any]]:
    """The segments of one video; one open segment when it cannot be probed (its task will reject it)."""
    try:
        spans = segments(probe(root, source), cfg.frame_limit, cfg.segment_frames)
    except Reject:
        spans = [(0, cfg.frame_limit or OPEN_END)]
    unit = {"source": source.relpath, "kind": source.kind, "frames": list(source.frames)}
    return [{**unit, "start": start, "stop": stop} for start, stop in spans]


DAMAGED, DAMAGED_NEIGHBOUR = "damaged frame", "damaged neighbour"


def damage_filter(frame: Frame, window: dict[int, Frame], reach: int) -> tuple[str, str] | None:
    """(reason, detail) when ``frame`` is damaged or the nearest damaged frame lies within ``reach`` of it, else
    None. Every partner a recipe may pick lies within reach, so none is ever masked against a damaged frame."""
    if frame.damage is not None:
        return DAMAGED, frame.damage
    for index in sorted(range(frame.index - reach, frame.index + reach + 1), key=lambda i: abs(i - frame.index)):
        other = window.get(index)
        if other is not None and other.damage is not None:
            return DAMAGED_NEIGHBOUR, f"frame {index}: {other.damage}"
    return None


def expected_samples(unit: dict[str, Any], cfg: Any, open_weight: int) -> int:
    """How many frames a segment considers (an open-ended one counts as a full shard)."""
    if unit["stop"] >= OPEN_END:
        return open_weight
    return max(1, math.ceil((unit["stop"] - unit["start"]) / cfg.stride))


class Segment:
    """One segment being run: where its samples and filtered rows go."""

    def __init__(self, recipe: Recipe, cfg: Any, state: Any, unit: dict, shard: int, result: ShardResult) -> None:
        self.recipe, self.cfg, self.state, self.unit, self.shard, self.result = recipe, cfg, state, unit, shard, result
        self.info: VideoInfo | None = None

    @property
    def source(self) -> str:
        return self.unit["source"]

    def emit(self, frame: Frame, window: dict[int, Frame]) -> None:
        """One considered frame through the recipe: a sample, or a filtered row with its reason."""
        damaged = damage_filter(frame, window, self.cfg.reach)
        if damaged is not None:
            self.result.reject(self.source, self.shard, *damaged, frame=frame.index, kind="filtered")
            return
        try:
            output = self.recipe.make_sample(frame, window, self.cfg, self.state)
        except Filtered as exc:
            detail = json.dumps(exc.stats, sort_keys=True) if exc.stats else ""
            self.result.reject(self.source, self.shard, exc.reason, detail, frame=frame.index, kind="filtered")
            return
        output.fields["json"] = encode_json({**output.params, "source": self.source, "frame": frame.index})
        row = {
            "shard": self.shard,
            "source": self.source,
            "frame": frame.index,
            "label": label_of(self.source),
            "source_mode": self.unit["kind"],
            "width": self.info.width,
            "height": self.info.height,
        }
        self.result.add(sample_key(self.source, f"_f{frame.index:06d}"), output, row)

    def run(self, root: Path, video: VideoSource) -> None:
        """Decode the segment's frames and the ``reach`` frames on each side of it; hand every considered
        frame to the recipe once the frames ``reach`` after it are decoded (or the video has ended)."""
        start, stop, cfg = self.unit["start"], self.unit["stop"], self.cfg
        reach = cfg.reach
        recent: deque[Frame] = deque()  # decoded frames within reach of a frame still to be handed over
        pending: deque[Frame] = deque()  # considered frames waiting for their later neighbours
        decoded = 0

        def flush(until: int | None) -> None:
            window = {f.index: f for f in recent}
            while pending and (until is None or until >= pending[0].index + reach):
                self.emit(pending.popleft(), window)

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


def process(recipe: Recipe, config: dict[str, Any], root: Path, shard: int, units: list[dict[str, Any]]) -> ShardResult:
    """Every segment of the shard; a bad video becomes a reject row, never an exception. The samples are
    pre-shuffled, so consecutive frames of one video do not sit together in the shard."""
    cfg = parsed_config(recipe, config["recipe"])
    result, state = ShardResult(), recipe.setup(cfg)
    for unit in units:
        video = VideoSource(unit["source"], unit["kind"], tuple(unit.get("frames", ())))
        segment = Segment(recipe, cfg, state, unit, shard, result)
        try:
            segment.info = info = probe(root, video)
            if min(info.width, info.height) < cfg.min_source_side:
                raise Reject("too small", f"{info.width}x{info.height}, shorter side below {cfg.min_source_side}")
            segment.run(root, video)
        except Reject as exc:
            source = display_name(video.relpath)
            result.reject(source, shard, exc.reason, exc.detail, frame=unit["start"] if unit["start"] else -1)
        except InputVanished:
            raise  # the build stops: the set would lack an input its fingerprint claims
        except Exception as exc:  # a bug must not stop the build: record it with its trace
            result.reject(
                display_name(video.relpath), shard, "internal error", internal_error(exc), frame=unit["start"]
            )
    result.shuffle(np.random.default_rng([config["seed"], shard]))
    return result
