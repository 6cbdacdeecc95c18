"""Video sources: listing (video files and folders of numbered frames), probing, and sequential decoding.

A video file is decoded with PyAV, one thread per video, sequentially: a segment that starts later
seeks once to the keyframe before it and decodes forward, never seeking per frame. Frames are
indexed by their presentation time times the average frame rate (the decode order for constant
frame rate, a stable nominal index for variable frame rate); a folder of numbered JPEG/PNG frames
counts as one video whose frame ``i`` is its ``i``-th file in numeric order (as in DAVIS and FBMS).
Every frame is returned at the working resolution (shorter side ``size``), upright.

A damaged frame is returned in its place with ``Frame.damage`` saying why, so callers can drop it: one the
decoder marks corrupt (PyAV's ``is_corrupt``: decode error flags or the corrupt flag), one whose packet the
decoder refuses (black; decoding goes on with the next packet), one predicted from a damaged frame with no
intact keyframe since (the decoder marks none of those, yet they carry the damage on), and an unreadable file
of a frame folder (black). A frame folder whose frames differ in size is rejected: frames are paired pixel by
pixel, and sequences (DAVIS, FBMS) keep one size throughout.
"""

from __future__ import annotations

import math
import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from PIL import Image

from mtssl.contract.frames import FRAME_EXTENSIONS, VIDEO_EXTENSIONS
from mtssl.contract.frames import frame_order as _frame_order
from pipelines.errors import Reject
from pipelines.imageio import load_rgb
from pipelines.resize import resize_short_side
from pipelines.sources import name_problem, walk_files

_DIGITS = re.compile(r"(\d+)")
OPEN_END = 2**31 - 1  # stop index of a segment whose video's length is unknown
# Why a frame file of a folder cannot be decoded that makes it a damaged frame, not a rejected video (any other
# reject, such as a frame that is not a regular file, rejects the video).
DAMAGED_FILE = {"unreadable", "empty file", "not an image", "corrupt image"}


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
    rgb: np.ndarray  # (H, W, 3) uint8 at the working resolution (black where nothing could be decoded)
    damage: str | None = None  # why the frame is damaged (never a sample, nor a partner); None when intact


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
    """What the container says about a video (cheap: no frame is decoded but a frame folder's first, whose
    other frames' headers are read for their size); Reject when unusable."""
    problem = name_problem(source.relpath)
    if problem is not None:
        raise Reject(*problem)
    if source.kind == "other":
        raise Reject("not a video", PurePosixPath(source.relpath).suffix or "no extension")
    if source.kind == "frames":
        first = load_rgb(Path(root) / source.frames[0])
        check_frame_sizes(root, source, first.source_size)
        return VideoInfo(len(source.frames), None, first.source_size[0], first.source_size[1])
    with _open(Path(root) / source.relpath) as container:
        stream = _video_stream(container)
        rate = stream.average_rate or stream.guessed_rate
        return VideoInfo(stream.frames or None, float(rate) if rate else None, stream.width, stream.height)


def header_size(path: Path) -> tuple[int, int] | None:
    """(width, height) from an image file's header, no pixel decoded; None when it cannot be read or is not a
    regular file (opened non-blocking: a named pipe must not hang the probe; decoding rejects it)."""
    try:
        with open(os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)), "rb") as file:
            if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
                return None
            with Image.open(file) as image:
                return image.size
    except (OSError, ValueError, SyntaxError):
        return None


def size_change(name: str, size: tuple[int, int], first: str, first_size: tuple[int, int]) -> Reject:
    """The reject of a frame folder whose frame ``name`` is ``size`` (width, height) and its first one is not."""
    name, first = PurePosixPath(name).name, PurePosixPath(first).name
    detail = f"{name} is {size[0]}x{size[1]}, the first frame {first} is {first_size[0]}x{first_size[1]}"
    return Reject("frame size changes", detail)


def check_frame_sizes(root: Path, source: VideoSource, first_size: tuple[int, int]) -> None:
    """Reject a frame folder with a frame of another size than its first (read from the headers, so the whole
    video is rejected before any of its frames becomes a sample). A frame whose header cannot be read is left
    to decoding, where it becomes a damaged frame."""
    for name in source.frames[1:]:
        size = header_size(Path(root) / name)
        if size is not None and size != first_size:
            raise size_change(name, size, source.frames[0], first_size)


def _open(path: Path, max_bytes: int | None = None):
    """The container of a video file. Only a regular file of at most ``max_bytes`` (default
    ``sources.MAX_VIDEO_BYTES``) is opened: a FIFO would block FFmpeg's open, a device never end. FFmpeg
    opens it by its descriptor's path, so it reads the file that was checked, whatever is at ``path`` now."""
    import av

    from pipelines.sources import MAX_VIDEO_BYTES, fd_path, open_regular

    with open_regular(path, MAX_VIDEO_BYTES if max_bytes is None else max_bytes) as (fd, size):
        if size == 0:
            raise Reject("empty file")
        name = fd_path(fd) or str(path)
        try:
            return av.open(name, metadata_errors="ignore")
        except av.FFmpegError as exc:
            raise Reject("corrupt video", str(exc).replace(name, path.name)[:200]) from exc
        except OSError as exc:
            raise Reject("unreadable", str(exc).replace(name, path.name)[:200]) from exc


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


def blank(width: int, height: int, size: int) -> np.ndarray:
    """A black frame at the working resolution: stands in for a frame that could not be decoded."""
    return resize_short_side(np.zeros((height, width, 3), np.uint8), size)


def _iter_folder(root: Path, source: VideoSource, start: int, stop: int, size: int) -> Iterator[Frame]:
    """The folder's frames; an unreadable frame file is a black damaged frame, and the video goes on."""
    first: tuple[str, tuple[int, ...]] | None = None  # the first frame decoded and its upright shape
    for index in range(start, min(stop, len(source.frames))):
        name = source.frames[index]
        try:
            image = load_rgb(Path(root) / name)
        except Reject as exc:
            if exc.reason not in DAMAGED_FILE:
                raise
            width, height = header_size(Path(root) / source.frames[0]) or (size, size)
            damage = f"frame file {PurePosixPath(name).name} unusable ({exc})"
            yield Frame(index, None, blank(width, height, size), damage)
            continue
        first = first or (name, image.rgb.shape)
        if image.rgb.shape != first[1]:  # same header size, turned otherwise by its EXIF orientation
            shape = first[1]
            raise size_change(name, image.rgb.shape[1::-1], first[0], (shape[1], shape[0]))
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
        timeline, last, previous = _Timeline(rate, base, origin), -1, None
        try:
            for index, pts, frame, damage in _with_damage(_decode_packets(container, stream), timeline):
                if frame is not None and frame.pts is None and seeked:  # no timestamps to place frames after a seek
                    yield from _iter_file(root, source, start, stop, size, seek=False)  # start over
                    return
                if index <= last or index < start:
                    continue  # before the segment, or a repeated nominal index (variable frame rate)
                if index >= stop:
                    break
                last = index
                if frame is not None:
                    rgb = previous = _working_rgb(frame, size)
                else:  # refused: black, as large as the frames around it
                    rgb = np.zeros_like(previous) if previous is not None else blank(stream.width, stream.height, size)
                yield Frame(index, timeline.time(pts), rgb, damage)
        except av.FFmpegError as exc:
            raise Reject("corrupt video", f"decoding stopped after frame {last}: {str(exc)[:160]}") from exc


def _working_rgb(frame: Any, size: int) -> np.ndarray:
    rgb = upright(frame.to_ndarray(format="rgb24"), getattr(frame, "rotation", 0) or 0)
    return resize_short_side(rgb, size)


@dataclass
class _Timeline:
    """Frame indices: presentation time times the frame rate, else the decode count (no time, or no rate)."""

    rate: float | None
    base: Any  # the stream's time base (a Fraction)
    origin: int  # the stream's start time, in time base units
    count: int = -1  # frames decoded so far, less one

    def at(self, pts: int | None) -> int | None:
        """The index a timestamp places a frame (or a refused packet) at; None without a time or a rate."""
        return None if pts is None or not self.rate else round((pts - self.origin) * self.base * self.rate)

    def frame_index(self, frame: Any) -> int:
        self.count += 1
        index = self.at(frame.pts)
        return self.count if index is None else index

    def time(self, pts: int | None) -> float | None:
        return None if pts is None else float((pts - self.origin) * self.base)


CORRUPT = "the decoder marked it corrupt"


def _decode_packets(container: Any, stream: Any) -> Iterator[tuple[Any, str | None]]:
    """The stream's decoded frames as ``(frame, None)``, and each packet the decoder refuses as invalid data as
    ``(packet, why)``: decoding goes on with the next packet, as a player does. Any other error stops it."""
    import av

    for packet in container.demux(stream):
        try:
            frames = packet.decode()
        except av.InvalidDataError as exc:
            yield packet, f"the decoder refused its packet: {str(exc)[:120]}"
            continue
        for frame in frames:
            yield frame, None


def _with_damage(decoded: Iterator[tuple[Any, str | None]], timeline: _Timeline) -> Iterator[tuple]:
    """``(index, pts, frame, damage)`` in presentation order: ``frame`` is None for a refused packet, given at its
    place once the frames before it are out; ``damage`` is None for an intact frame, else why it is damaged.
    A frame predicted from a damaged one is damaged too, unmarked by the decoder (measured on MPEG-4 and H.264:
    a mean error of 6 to 12 grey levels on every frame up to the next keyframe), until the next intact keyframe.
    B-frames shown just before a damaged frame they were predicted from are not caught here; they lie within a
    few frames of it, where ``pipelines.units.videos`` filters frames as damaged neighbours."""
    refused: dict[int, tuple[int, str]] = {}  # index -> (pts, why) of refused packets not given yet
    carried: str | None = None  # the damage the frames being decoded inherit
    for item, why in decoded:
        if why is not None:
            index = timeline.at(item.pts)
            if index is not None:
                refused[index] = (item.pts, why)
            damaged = "a refused packet" if index is None else f"damaged frame {index}"
            carried = f"predicted from {damaged} (no intact keyframe since)"
            continue
        index = timeline.frame_index(item)
        yield from _release(refused, below=index)
        own = refused.pop(index, (None, None))[1] or (CORRUPT if item.is_corrupt else None)
        if own is not None:
            carried = f"predicted from damaged frame {index} (no intact keyframe since)"
        elif item.key_frame:
            carried = None
        yield index, item.pts, item, own or carried
    yield from _release(refused, below=None)


def _release(refused: dict[int, tuple[int, str]], below: int | None) -> Iterator[tuple]:
    """The refused packets placed before ``below`` (all when None), in order, as ``(index, pts, None, why)``."""
    for index in sorted(i for i in refused if below is None or i < below):
        pts, why = refused.pop(index)
        yield index, pts, None, why


def segments(info: VideoInfo, max_frames: int | None, segment_frames: int) -> list[tuple[int, int]]:
    """Split a video's frame range into [start, stop) segments; unknown length gives one open segment."""
    total = info.frames if info.frames is not None else None
    if max_frames is not None:
        total = max_frames if total is None else min(total, max_frames)
    if total is None:
        return [(0, OPEN_END)]
    count = max(1, math.ceil(total / segment_frames))
    return [(i * segment_frames, min(total, (i + 1) * segment_frames)) for i in range(count)]
