from pathlib import Path

import numpy as np
import pytest

from pipelines.errors import Reject
from pipelines.videos import VideoInfo, VideoSource, iter_frames, list_video_tree, probe, segments, upright

from .videokit import moving_square_frames, write_audio_only, write_frame_folder, write_lossless, write_video


@pytest.fixture(scope="module")
def frames():
    return moving_square_frames(30)


@pytest.fixture(scope="module")
def tree(tmp_path_factory, frames) -> Path:
    root = tmp_path_factory.mktemp("videos")
    write_lossless(root / "lossless.mkv", frames)
    write_video(root / "clip.mp4", frames)
    write_frame_folder(root / "seq" / "frames", frames)
    (root / "readme.txt").write_text("not a video")
    return root


def test_listing_finds_files_frame_folders_and_others(tree):
    listed = {s.relpath: s for s in list_video_tree(tree)}
    assert set(listed) == {"clip.mp4", "lossless.mkv", "readme.txt", "seq/frames"}
    assert listed["seq/frames"].kind == "frames" and len(listed["seq/frames"].frames) == 30
    assert listed["seq/frames"].frames[10].endswith("00010.png") and listed["readme.txt"].kind == "other"


def test_numeric_frame_order(tmp_path, frames):
    folder = tmp_path / "f"
    folder.mkdir()
    for i in (1, 2, 10, 11):
        (folder / f"frame{i}.png").write_bytes(b"")
    (source,) = list_video_tree(tmp_path)
    assert [Path(f).name for f in source.frames] == ["frame1.png", "frame2.png", "frame10.png", "frame11.png"]


def test_probe(tree):
    info = probe(tree, VideoSource("clip.mp4", "file"))
    assert (info.frames, info.width, info.height) == (30, 128, 96) and info.fps == 25
    assert probe(
        tree, VideoSource("seq/frames", "frames", tuple(f"seq/frames/{i:05d}.png" for i in range(30)))
    ) == VideoInfo(30, None, 128, 96)
    with pytest.raises(Reject, match="not a video"):
        probe(tree, VideoSource("readme.txt", "other"))


def test_lossless_file_and_frame_folder_decode_to_the_same_frames(tree, frames):
    folder = next(s for s in list_video_tree(tree) if s.kind == "frames")
    from_file = list(iter_frames(tree, VideoSource("lossless.mkv", "file"), 0, 99, size=96))
    from_folder = list(iter_frames(tree, folder, 0, 99, size=96))
    assert [f.index for f in from_file] == [f.index for f in from_folder] == list(range(30))
    for a, b, original in zip(from_file, from_folder, frames, strict=True):
        assert np.array_equal(a.rgb, b.rgb) and np.array_equal(a.rgb, original)


@pytest.mark.parametrize("name", ["clip.mp4", "lossless.mkv"])
def test_a_later_segment_gives_the_same_frames_as_decoding_from_the_start(tree, name):
    source = VideoSource(name, "file")
    whole = {f.index: f.rgb for f in iter_frames(tree, source, 0, 99, size=96)}
    part = list(iter_frames(tree, source, 17, 25, size=96))
    assert [f.index for f in part] == list(range(17, 25))
    assert all(np.array_equal(f.rgb, whole[f.index]) for f in part)


def test_working_resolution_keeps_aspect(tree):
    frame = next(iter_frames(tree, VideoSource("clip.mp4", "file"), 0, 1, size=48))
    assert frame.rgb.shape == (48, 64, 3) and frame.time == 0


def test_variable_frame_rate_gets_monotonic_unique_indices(tmp_path, frames):
    pts = [0, 40, 80, 100, 200, 240, 250, 400, 440, 480]
    write_video(tmp_path / "vfr.mkv", frames[:10], pts_ms=pts)
    decoded = list(iter_frames(tmp_path, VideoSource("vfr.mkv", "file"), 0, 10**6, size=96))
    # nominal index = round(time * 25 fps); a frame repeating an index (100 ms after 80 ms) is skipped
    assert [f.index for f in decoded] == [0, 1, 2, 5, 6, 10, 11, 12]
    assert [round(f.time * 1000) for f in decoded] == [0, 40, 80, 200, 240, 400, 440, 480]


@pytest.mark.parametrize("kind", ["empty", "truncated", "garbage", "audio", "dangling"])
def test_broken_videos_are_rejected_with_a_reason(tmp_path, tree, kind):
    path = tmp_path / f"{kind}.mp4"
    if kind == "dangling":
        path.symlink_to(tmp_path / "nowhere.mp4")
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        data = (tree / "clip.mp4").read_bytes()
        path.write_bytes(data[: len(data) // 3])
    elif kind == "garbage":
        path.write_bytes(b"\0not a video" * 100)
    elif kind == "audio":
        write_audio_only(path)
    source = VideoSource(path.name, "file")
    with pytest.raises(Reject) as info:
        probe(tmp_path, source)
        list(iter_frames(tmp_path, source, 0, 99, size=64))
    assert info.value.reason in {"empty file", "corrupt video", "no video stream", "unreadable"}
    if kind == "audio":
        assert info.value.reason == "no video stream" and "audio" in info.value.detail


def test_a_video_with_nothing_at_its_path_vanished_and_is_not_a_reject(tmp_path):
    """Listed, then gone (deleted, moved): the build must stop, not reject it (tests/faults has the build)."""
    from pipelines.errors import InputVanished

    with pytest.raises(InputVanished, match="vanished during the build"):
        probe(tmp_path, VideoSource("gone.mp4", "file"))


def test_upright_rotates_counter_clockwise():
    image = np.zeros((2, 3, 3), np.uint8)
    image[0, 2] = 255  # top-right
    turned = upright(image, 90)
    assert turned.shape == (3, 2, 3) and turned[0, 0].max() == 255  # top-right goes to top-left
    assert upright(image, 0) is image


def test_segments():
    assert segments(VideoInfo(250, 25.0, 64, 64), None, 100) == [(0, 100), (100, 200), (200, 250)]
    assert segments(VideoInfo(250, 25.0, 64, 64), 120, 100) == [(0, 100), (100, 120)]
    assert segments(VideoInfo(None, None, 64, 64), None, 100) == [(0, 2**31 - 1)]
