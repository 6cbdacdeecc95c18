"""Small video writers for tests: known frames in, so decoded frames and masks can be checked."""

from __future__ import annotations

import fractions
from pathlib import Path

import av
import cv2
import numpy as np


def moving_square_frames(count: int = 24, height: int = 96, width: int = 128, seed: int = 0) -> list[np.ndarray]:
    """A textured square moving right over a textured static background; frame i is distinguishable."""
    rng = np.random.default_rng(seed)
    background = cv2.resize(rng.integers(0, 256, (height // 4, width // 4, 3), dtype=np.uint8), (width, height))
    square = cv2.resize(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8), (40, 40), interpolation=cv2.INTER_NEAREST)
    frames = []
    for i in range(count):
        frame = background.copy()
        x = 8 + 2 * i
        frame[28:68, x : x + 40] = square  # 13% of the frame: above the 10% foreground filter
        frames.append(frame)
    return frames


def write_video(
    path: Path,
    frames: list[np.ndarray],
    codec: str = "libx264",
    rate: int = 25,
    pts_ms: list[int] | None = None,
    pix_fmt: str = "yuv420p",
) -> Path:
    """Encode RGB frames; ``pts_ms`` gives explicit timestamps (variable frame rate)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = frames[0].shape[1], frames[0].shape[0], pix_fmt
        if pts_ms is not None:
            stream.time_base = stream.codec_context.time_base = fractions.Fraction(1, 1000)
        for i, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            if pts_ms is not None:
                frame.pts, frame.time_base = pts_ms[i], fractions.Fraction(1, 1000)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def write_lossless(path: Path, frames: list[np.ndarray]) -> Path:
    return write_video(path, frames, codec="ffv1", pix_fmt="bgr0")


def write_frame_folder(folder: Path, frames: list[np.ndarray]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, rgb in enumerate(frames):
        cv2.imwrite(str(folder / f"{i:05d}.png"), rgb[..., ::-1])
    return folder


def write_audio_only(path: Path) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        samples = (np.sin(np.arange(16000) / 10) * 8000).astype(np.int16)[None]
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate = 16000
        container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def write_zero_frames(path: Path) -> Path:
    """A container with a video stream and not a single frame."""
    container = av.open(str(path), "w")
    stream = container.add_stream("ffv1", rate=25)
    stream.width, stream.height, stream.pix_fmt = 64, 64, "bgr0"
    container.start_encoding()  # writes the header; no frame follows
    container.close()
    return path
