"""Inputs that are not plain image or video files, and images beyond 8-bit RGB.

A named pipe, a device or a socket in a tree must be rejected with its kind, never opened in a way that
blocks or read without end; a float or 16-bit image must keep its brightness, and one whose range has no
8-bit reading must be rejected with the range it has. Every test that could hang on a regression runs under
a deadline (SIGALRM interrupts a blocked open), and the one that could read ``/dev/zero`` without end runs
in a child process with a memory limit.
"""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import av
import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from pipelines.build import build, plan_build
from pipelines.errors import Reject
from pipelines.imageio import load_rgb
from pipelines.inspect import iter_tar_samples
from pipelines.recipes.color import ColorRecipeConfig
from pipelines.recipes.motion import MotionRecipeConfig
from pipelines.recipes.rotation import RotationRecipeConfig
from pipelines.sources import content_digest
from pipelines.videos import VideoSource, iter_frames, probe

ROOT = Path(__file__).resolve().parents[2]
DEADLINE_S = 30  # far above what any of these takes: only a blocked call reaches it
NOT_REGULAR = "not a regular file"
BAD_RANGE = "unsupported pixel range"


class Hung(BaseException):
    """Raised by the deadline; a BaseException, so that a build's per-input ``except Exception`` cannot keep it."""


@contextmanager
def deadline(seconds: float = DEADLINE_S) -> Iterator[None]:
    """Fail instead of hanging: SIGALRM interrupts a blocked open() or read(), and the handler's exception
    ends the call (PEP 475 retries a system call only when the handler returns)."""

    def expire(signum, frame):
        raise Hung(f"still blocked after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def texture(height: int = 96, width: int = 128, seed: int = 0) -> np.ndarray:
    """A smooth random colour texture in [0, 1], (H, W, 3) float64: real content, so a blank decode shows."""
    coarse = np.random.default_rng(seed).random((height // 8, width // 8, 3))
    return cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC).clip(0, 1)


def write_photos(folder: Path, count: int = 3) -> list[str]:
    """``count`` 8-bit JPEGs in ``folder``; their names."""
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for k in range(count):
        Image.fromarray((texture(seed=k) * 255).astype(np.uint8)).save(folder / f"photo{k}.jpg", quality=90)
        names.append(f"photo{k}.jpg")
    return names


def save_float(path: Path, gray: np.ndarray) -> Path:
    """A one-channel float32 TIFF (Pillow mode F)."""
    Image.fromarray(gray.astype(np.float32), mode="F").save(path)
    return path


def rejects_of(out: Path) -> dict[str, tuple[str, str]]:
    return {r["source"]: (r["reason"], r["detail"]) for r in pq.read_table(out / "rejects.parquet").to_pylist()}


def sources_of(out: Path) -> set[str]:
    return {r["source"] for r in pq.read_table(out / "index.parquet").to_pylist()}


# --- inputs that are not regular files ---------------------------------------------------------------------


@pytest.mark.parametrize("rehash", [False, True])
def test_a_fifo_in_an_image_tree_is_rejected_and_the_build_ends(tmp_path, rehash):
    images = tmp_path / "images"
    photos = [f"a/{name}" for name in write_photos(images / "a")]
    os.mkfifo(images / "a" / "pipe.jpg")
    out = tmp_path / "out"
    with deadline():
        config = ColorRecipeConfig(min_source_side=64)
        build("color", images, out, config, workers=0, samples_per_shard=2, show_progress=False, rehash=rehash)
    reason, detail = rejects_of(out)["a/pipe.jpg"]
    assert reason == NOT_REGULAR and "named pipe" in detail
    assert sources_of(out) == set(photos)


KINDS = {
    "fifo": "a named pipe (FIFO)",
    "socket": "a socket",
    "device": "a character device",
    "directory": "a directory",
}


@pytest.mark.parametrize("target", sorted(KINDS))
def test_load_rgb_rejects_what_is_not_a_regular_file_with_its_kind(tmp_path, target):
    path = tmp_path / "input.jpg"
    if target == "fifo":
        os.mkfifo(path)
    elif target == "socket":
        server = socket.socket(socket.AF_UNIX)
        server.bind(str(path))
        server.close()
    elif target == "device":
        path.symlink_to("/dev/null")  # a character device that reads as empty: no memory at risk on a regression
    else:
        path.mkdir()
    with deadline(), pytest.raises(Reject) as info:
        load_rgb(path)
    assert (info.value.reason, info.value.detail) == (NOT_REGULAR, KINDS[target])


def fifo_checked_as_regular(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A FIFO at ``path`` that ``os.stat`` reports as a regular file: a FIFO swapped in after the check."""
    os.mkfifo(path)
    regular, real_stat = os.stat(__file__), os.stat

    def stat_before_the_swap(target, *args, **kwargs):
        return regular if os.fspath(target) == os.fspath(path) else real_stat(target, *args, **kwargs)

    monkeypatch.setattr(os, "stat", stat_before_the_swap)


def test_a_fifo_swapped_in_after_the_check_is_not_opened_blocking(tmp_path, monkeypatch):
    """The path was a regular file when it was checked and is a FIFO when it is opened: what is opened is
    checked again, and opening never waits for a writer."""
    fifo_checked_as_regular(tmp_path / "swapped.jpg", monkeypatch)
    with deadline(), pytest.raises(Reject) as info:
        load_rgb(tmp_path / "swapped.jpg")
    monkeypatch.undo()
    assert (info.value.reason, info.value.detail) == (NOT_REGULAR, "a named pipe (FIFO)")


def test_a_file_over_the_byte_cap_is_too_large(tmp_path):
    path = tmp_path / "big.jpg"
    path.write_bytes(b"\xff" * 2000)
    with pytest.raises(Reject) as info:
        load_rgb(path, max_bytes=1000)
    assert info.value.reason == "too large" and info.value.detail == "2000 bytes exceeds max_bytes=1000"


def test_content_digest_of_a_fifo_is_empty_without_blocking(tmp_path):
    os.mkfifo(tmp_path / "pipe.jpg")
    (tmp_path / "photo.jpg").write_bytes(b"jpeg bytes")
    with deadline():
        assert content_digest(tmp_path, ["pipe.jpg"]) == ""
    assert len(content_digest(tmp_path, ["photo.jpg"])) == 16


CHILD = """
import json, resource, sys
from pathlib import Path
resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))  # a regression reads /dev/zero into a MemoryError
from pipelines.build import build
from pipelines.errors import Reject
from pipelines.recipes.color import ColorRecipeConfig
from pipelines.videos import VideoSource, probe
images, out, videos = map(Path, sys.argv[1:])
build("color", images, out, ColorRecipeConfig(min_source_side=64), workers=0, samples_per_shard=2,
      show_progress=False, rehash=True)
try:
    probe(videos, VideoSource("zero.mp4", "file"))
except Reject as exc:
    print(json.dumps([exc.reason, exc.detail]))
"""


@pytest.mark.slow  # starts a process: the memory limit must not fall on the test run itself
def test_a_symlink_to_dev_zero_is_rejected_without_being_read(tmp_path):
    images, videos = tmp_path / "images", tmp_path / "videos"
    photos = [f"a/{name}" for name in write_photos(images / "a", count=2)]
    (images / "a" / "zero.jpg").symlink_to("/dev/zero")
    videos.mkdir()
    (videos / "zero.mp4").symlink_to("/dev/zero")
    args = [sys.executable, "-c", CHILD, str(images), str(tmp_path / "out"), str(videos)]
    child = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert child.returncode == 0, child.stderr[-2000:]
    assert rejects_of(tmp_path / "out")["a/zero.jpg"] == (NOT_REGULAR, "a character device")
    assert sources_of(tmp_path / "out") == set(photos)
    assert json.loads(child.stdout.strip().splitlines()[-1]) == [NOT_REGULAR, "a character device"]


def write_clip(path: Path, count: int = 6) -> None:
    """A tiny lossless video of a moving square."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("ffv1", rate=25)
        stream.width, stream.height, stream.pix_fmt = 128, 96, "yuv420p"
        base = (texture() * 255).astype(np.uint8)
        for i in range(count):
            rgb = base.copy()
            rgb[28:68, 8 + 2 * i : 48 + 2 * i] = 255 - rgb[28:68, 8 + 2 * i : 48 + 2 * i]
            container.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        container.mux(stream.encode())


def test_a_fifo_named_like_a_video_is_rejected_and_the_plan_ends(tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    write_clip(videos / "clip.mkv")
    os.mkfifo(videos / "x.mp4")
    cfg = MotionRecipeConfig(size=96, stride=2, max_frames=None, segment_frames=8, min_source_side=32)
    with deadline():
        plan = plan_build("motion", videos, tmp_path / "out", cfg, show_progress=False, rehash=True)
        with pytest.raises(Reject) as info:
            probe(videos, VideoSource("x.mp4", "file"))
        with pytest.raises(Reject) as decoding:
            list(iter_frames(videos, VideoSource("x.mp4", "file"), 0, 99, size=64))
    assert {u["source"] for u in plan.units} == {"clip.mkv", "x.mp4"}
    assert (info.value.reason, info.value.detail) == (NOT_REGULAR, "a named pipe (FIFO)")
    assert decoding.value.reason == NOT_REGULAR
    assert [f.index for f in iter_frames(videos, VideoSource("clip.mkv", "file"), 0, 99, size=64)] == list(range(6))


def test_a_video_swapped_for_a_fifo_after_the_check_is_not_opened_blocking(tmp_path, monkeypatch):
    fifo_checked_as_regular(tmp_path / "x.mp4", monkeypatch)
    with deadline(), pytest.raises(Reject) as info:
        probe(tmp_path, VideoSource("x.mp4", "file"))
    monkeypatch.undo()
    assert (info.value.reason, info.value.detail) == (NOT_REGULAR, "a named pipe (FIFO)")


def test_a_fifo_in_a_frame_folder_rejects_the_folder_without_blocking(tmp_path):
    folder = tmp_path / "seq"
    folder.mkdir()
    cv2.imwrite(str(folder / "00000.png"), (texture() * 255).astype(np.uint8))
    os.mkfifo(folder / "00001.png")
    source = VideoSource("seq", "frames", ("seq/00000.png", "seq/00001.png"))
    with deadline(), pytest.raises(Reject) as info:
        list(iter_frames(tmp_path, source, 0, 2, size=64))
    assert (info.value.reason, info.value.detail) == (NOT_REGULAR, "a named pipe (FIFO)")


# --- images beyond 8-bit RGB --------------------------------------------------------------------------------


def gray_reference(height: int = 96, width: int = 128) -> np.ndarray:
    """A grayscale gradient with texture, in [0, 1], reaching both ends."""
    gray = texture(height, width)[..., 0]
    return (gray - gray.min()) / (gray.max() - gray.min())


def assert_gray_close(loaded, expected8: np.ndarray, tolerance: float = 1.0) -> None:
    assert loaded.rgb.dtype == np.uint8 and loaded.rgb.shape == (*expected8.shape, 3)
    assert np.abs(loaded.rgb.astype(float) - expected8[..., None]).max() <= tolerance


@pytest.mark.parametrize("white", [1.0, 255.0])
def test_a_float_image_is_read_by_its_range(tmp_path, white):
    gray = gray_reference()
    loaded = load_rgb(save_float(tmp_path / "float.tif", gray * white))
    assert loaded.source_mode == "F"
    assert_gray_close(loaded, np.rint(gray * 255))


@pytest.mark.parametrize("value,expected", [(0.5, 128), (1.0, 255), (0.0, 0), (100.0, 100), (255.0, 255)])
def test_a_constant_float_image_is_not_misscaled(tmp_path, value, expected):
    loaded = load_rgb(save_float(tmp_path / "flat.tif", np.full((40, 50), value)))
    assert np.all(loaded.rgb == expected)


def test_a_float_tiff_written_by_opencv_reads_at_its_brightness(tmp_path):
    path = tmp_path / "cv.tif"
    cv2.imwrite(str(path), np.full((40, 50), 0.5, np.float32))
    assert abs(load_rgb(path).rgb.mean() - 127.5) <= 0.5


@pytest.mark.parametrize(
    "name,values",
    [
        ("negative", np.linspace(-0.2, 1, 40 * 50)),
        ("above 255", np.linspace(0, 300, 40 * 50)),
        ("signed [-1, 1]", np.linspace(-1, 1, 40 * 50)),
        ("NaN", np.where(np.arange(40 * 50) == 7, np.nan, 0.5)),
        ("infinite", np.where(np.arange(40 * 50) == 7, np.inf, 0.5)),
    ],
)
def test_a_float_image_out_of_both_ranges_is_rejected_with_its_range(tmp_path, name, values):
    with pytest.raises(Reject) as info:
        load_rgb(save_float(tmp_path / "odd.tif", values.reshape(40, 50)))
    assert info.value.reason == BAD_RANGE
    expected = "not finite" if name in ("NaN", "infinite") else "float samples from"
    assert expected in info.value.detail


def test_a_float_image_overshooting_by_less_than_half_a_level_is_read(tmp_path):
    values = gray_reference() * (1 + 0.4 / 255) - 0.1 / 255  # resampling ringing, not another range
    assert load_rgb(save_float(tmp_path / "ringing.tif", values)).rgb.max() == 255


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_a_16_bit_grayscale_image_is_scaled_by_65535_not_stretched(tmp_path, suffix):
    gray = gray_reference()
    deep = tmp_path / f"deep{suffix}"
    cv2.imwrite(str(deep), np.rint(gray * 65535).astype(np.uint16))
    assert_gray_close(load_rgb(deep), np.rint(gray * 255))
    dark = tmp_path / f"dark{suffix}"  # 12 bits of data in a 16-bit file stays dark: the type's range is white
    cv2.imwrite(str(dark), np.rint(gray * 4095).astype(np.uint16))
    assert load_rgb(dark).rgb.max() == 16


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_a_16_bit_colour_image_keeps_its_colours(tmp_path, suffix):
    rgb = texture()
    path = tmp_path / f"rgb16{suffix}"
    cv2.imwrite(str(path), np.rint(rgb[..., ::-1] * 65535).astype(np.uint16))
    loaded = load_rgb(path).rgb.astype(float)
    assert np.abs(loaded - rgb * 255).max() <= 1.0  # Pillow keeps the high byte: within one level


def test_a_pgm_with_a_10_bit_maxval_is_scaled_by_its_maxval(tmp_path):
    gray = gray_reference()
    path = tmp_path / "ten.pgm"
    path.write_bytes(b"P5\n128 96\n1023\n" + np.rint(gray * 1023).astype(">u2").tobytes())
    assert_gray_close(load_rgb(path), np.rint(gray * 255))


@pytest.mark.parametrize("kind", ["int32", "negative int16"])
def test_wide_or_signed_integer_images_without_a_white_level_are_rejected(tmp_path, kind):
    path = tmp_path / "counts.tif"
    values = np.arange(96 * 128).reshape(96, 128)
    cv2.imwrite(str(path), values.astype(np.int32) if kind == "int32" else (values % 1000 - 500).astype(np.int16))
    with pytest.raises(Reject) as info:
        load_rgb(path)
    assert info.value.reason == BAD_RANGE


def test_a_float_colour_tiff_pillow_cannot_decode_is_rejected_as_an_unsupported_format(tmp_path):
    path = tmp_path / "float_rgb.tif"
    cv2.imwrite(str(path), texture().astype(np.float32))
    with pytest.raises(Reject) as info:
        load_rgb(path)
    assert info.value.reason == "unsupported pixel format" and "TIFF" in info.value.detail


@pytest.mark.parametrize("mode", ["CMYK", "YCbCr", "LAB"])
def test_other_colour_modes_convert_to_the_same_picture(tmp_path, mode):
    rgb8 = (texture() * 255).astype(np.uint8)
    path = tmp_path / f"{mode}.tif"
    Image.fromarray(rgb8).convert(mode).save(path)
    loaded = load_rgb(path)
    assert loaded.source_mode == mode
    assert np.abs(loaded.rgb.astype(float) - rgb8).mean() < 6


def test_a_1_bit_image_reads_black_and_white(tmp_path):
    bits = gray_reference() > 0.5
    path = tmp_path / "bits.png"
    Image.fromarray(bits).save(path)
    loaded = load_rgb(path)
    assert loaded.source_mode == "1" and np.array_equal(loaded.rgb[..., 1], np.where(bits, 255, 0))


@pytest.mark.parametrize("suffix", [".gif", ".tif"])
def test_a_multi_frame_image_reads_its_first_frame(tmp_path, suffix):
    frames = [Image.fromarray(np.full((40, 50, 3), value, np.uint8)) for value in (30, 200)]
    path = tmp_path / f"pages{suffix}"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    assert np.abs(load_rgb(path).rgb.astype(int) - 30).max() <= 1


def test_deep_images_build_at_their_brightness_and_bad_ranges_are_rejected(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    save_float(images / "half.tif", np.full((96, 128), 0.5))
    save_float(images / "hundred.tif", np.full((96, 128), 100.0))
    cv2.imwrite(str(images / "deep16.png"), np.full((96, 128), 128 * 257, np.uint16))
    save_float(images / "hdr.tif", np.linspace(0, 1000, 96 * 128).reshape(96, 128))
    out = tmp_path / "out"
    config = RotationRecipeConfig(size=96, min_source_side=64)
    build("rotation", images, out, config, workers=0, samples_per_shard=8, show_progress=False)
    brightness = {}
    for shard in sorted(out.glob("*.tar")):
        for sample in iter_tar_samples(shard):
            source = json.loads(sample["json"])["source"]
            brightness[source] = np.asarray(Image.open(io.BytesIO(sample["rgb.jpg"]))).mean()
    assert brightness.keys() == {"half.tif", "hundred.tif", "deep16.png"}
    assert abs(brightness["half.tif"] - 128) <= 1 and abs(brightness["deep16.png"] - 128) <= 1
    assert abs(brightness["hundred.tif"] - 100) <= 1
    assert rejects_of(out)["hdr.tif"][0] == BAD_RANGE
