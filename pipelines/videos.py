"""Video sources: listing (video files and folders of numbered frames), probing, and sequential decoding.

A video file is decoded with PyAV, one thread per video, sequentially: a segment that starts later
seeks once to the keyframe before it and decodes forward, never seeking per frame. Frames are
indexed by their presentation time times the average frame rate (the decode order for constant
frame rate, a stable nominal index for variable frame rate); a folder of numbered JPEG/PNG frames
counts as one video whose frame ``i`` is its ``i``-th file in numeric order (as in DAVIS and FBMS).
Every frame is returned at the working resolution (shorter side ``size``), upright.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from pipelines.errors import Reject, check_still_there
from pipelines.imageio import load_rgb
from pipelines.resize import resize_short_side
from pipelines.sources import name_problem, walk_files

VIDEO_EXTENSIONS = {".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v"}
FRAME_EXTENSIONS = {".jpg", ".jpeg", ".png"}
_DIGITS = re.compile(r"(\d+)")
OPEN_END = 2**31 - 1  # stop index of a segment whose video's length is unknown


@dataclass(frozen=True)
class VideoSource:
    """A video file, a folder of frames (``frames`` lists its files in order), or another file."""

    relpath: str
    kind: str  # "file", "frames" or "other"
    frames: tuple[str, ...] = ()


@dataclass(frozen=True)
class VideoInfo:
    frames: int | None  # known frame count (None when the container does not say)
    fps: float | None
    width: int
    height: int


@dataclass(frozen=True)
class Frame:
    index: int
    time: float | None  # seconds from the start (None for frame folders)
    rgb: np.ndarray  # (H, W, 3) uint8 at the working resolution


def _frame_order(name: str) -> tuple:
    """Numeric order of frame files: '00010.jpg' after '00009.jpg', 'frame2' before 'frame10'."""
    return tuple(int(part) if part.isdigit() else part for part in _DIGITS.split(PurePosixPath(name).stem))


def list_video_tree(root: Path) -> list[VideoSource]:
    """Video files, frame folders (2+ numbered images in one folder) and any other file, sorted."""
    by_folder: dict[str, list[str]] = {}
    sources: list[VideoSource] = []
    for relpath in walk_files(root):
        suffix = PurePosixPath(relpath).suffix.lower()
        if name_problem(relpath) is not None:  # rejected by probe with its reason, never part of a video
            sources.append(VideoSource(relpath, "other"))
        elif suffix in VIDEO_EXTENSIONS:
            sources.append(VideoSource(relpath, "file"))
        elif suffix in FRAME_EXTENSIONS and _DIGITS.search(PurePosixPath(relpath).stem):
            by_folder.setdefault(str(PurePosixPath(relpath).parent), []).append(relpath)
        else:
            sources.append(VideoSource(relpath, "other"))
    for folder, files in by_folder.items():
        if len(files) >= 2:
            sources.append(VideoSource(folder, "frames", tuple(sorted(files, key=_frame_order))))
        else:
            sources.extend(VideoSource(f, "other") for f in files)
    return sorted(sources, key=lambda s: s.relpath)


def probe(root: Path, source: VideoSource) -> VideoInfo:
    """What the container says about a video (cheap: no frame is decoded); Reject when unusable."""
    problem = name_problem(source.relpath)
    if problem is not None:
        raise Reject(*problem)
    if source.kind == "other":
        raise Reject("not a video", PurePosixPath(source.relpath).suffix or "no extension")
    if source.kind == "frames":
        first = load_rgb(Path(root) / source.frames[0])
        return VideoInfo(len(source.frames), None, first.source_size[0], first.source_size[1])
    with _open(Path(root) / source.relpath) as container:
        stream = _video_stream(container)
        rate = stream.average_rate or stream.guessed_rate
        return VideoInfo(stream.frames or None, float(rate) if rate else None, stream.width, stream.height)


def _open(path: Path):
    import av

    if not path.exists():
        check_still_there(path)
        raise Reject("unreadable", "missing file or broken symlink")
    if path.stat().st_size == 0:
        raise Reject("empty file")
    try:
        return av.open(str(path), metadata_errors="ignore")
    except av.FFmpegError as exc:
        raise Reject("corrupt video", str(exc)[:200]) from exc
    except OSError as exc:
        raise Reject("unreadable", str(exc)[:200]) from exc


def _video_stream(container):
    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams}) or ["nothing"]
        raise Reject("no video stream", f"holds {', '.join(kinds)}")
    stream = container.streams.video[0]
    if stream.codec_context is None or not stream.codec_context.codec:
        raise Reject("unsupported codec", f"no decoder for codec tag {getattr(stream, 'codec_tag', '?')!r}")
    stream.thread_type = "SLICE"
    stream.thread_count = 1
    return stream


def upright(rgb: np.ndarray, rotation: int) -> np.ndarray:
    """Apply a display rotation (degrees counter-clockwise, as PyAV reports it)."""
    turns = (round(rotation / 90) % 4) if rotation else 0
    return np.ascontiguousarray(np.rot90(rgb, k=turns)) if turns else rgb


def iter_frames(root: Path, source: VideoSource, start: int, stop: int, size: int) -> Iterator[Frame]:
    """Frames with ``start <= index < stop`` at the working resolution, in order; Reject on failure."""
    if source.kind == "frames":
        yield from _iter_folder(root, source, start, stop, size)
    else:
        yield from _iter_file(root, source, start, stop, size)


def _iter_folder(root: Path, source: VideoSource, start: int, stop: int, size: int) -> Iterator[Frame]:
    for index in range(start, min(stop, len(source.frames))):
        image = load_rgb(Path(root) / source.frames[index])
        yield Frame(index, None, resize_short_side(image.rgb, size))


def _iter_file(root: Path, source: VideoSource, start: int, stop: int, size: int, seek: bool = True) -> Iterator[Frame]:
    import av

    with _open(Path(root) / source.relpath) as container:
        stream = _video_stream(container)
        rate = float(stream.average_rate or stream.guessed_rate or 0) or None
        base, origin = stream.time_base, stream.start_time or 0
        seeked = seek and start > 0 and rate is not None and base is not None
        if seeked:  # one seek to the keyframe before the segment, then decode forward
            container.seek(max(0, int((start - 1) / rate / base) + origin), stream=stream, backward=True)
        last, count = -1, -1
        try:
            for frame in container.decode(stream):
                count += 1
                if frame.pts is None and seeked:  # no timestamps to place frames after a seek: start over
                    yield from _iter_file(root, source, start, stop, size, seek=False)
                    return
                index = count if frame.pts is None or not rate else round((frame.pts - origin) * base * rate)
                if index <= last or index < start:
                    continue  # before the segment, or a repeated nominal index (variable frame rate)
                if index >= stop:
                    break
                last = index
                time = float((frame.pts - origin) * base) if frame.pts is not None else None
                rgb = upright(frame.to_ndarray(format="rgb24"), getattr(frame, "rotation", 0) or 0)
                yield Frame(index, time, resize_short_side(rgb, size))
        except av.FFmpegError as exc:
            raise Reject("corrupt video", f"decoding stopped after frame {last}: {str(exc)[:160]}") from exc


def segments(info: VideoInfo, max_frames: int | None, segment_frames: int) -> list[tuple[int, int]]:
    """Split a video's frame range into [start, stop) segments; unknown length gives one open segment."""
    total = info.frames if info.frames is not None else None
    if max_frames is not None:
        total = max_frames if total is None else min(total, max_frames)
    if total is None:
        return [(0, OPEN_END)]
    count = max(1, math.ceil(total / segment_frames))
    return [(i * segment_frames, min(total, (i + 1) * segment_frames)) for i in range(count)]
