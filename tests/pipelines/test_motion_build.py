"""Motion shards from videos: every video and frame accounted for, the same masks from files and folders."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest

from mtssl.contract import MANIFEST_FILE, decode_png
from pipelines.build import build
from pipelines.inspect import iter_tar_samples
from pipelines.recipes.motion import MotionRecipeConfig

from .videokit import (
    moving_square_frames,
    write_audio_only,
    write_frame_folder,
    write_lossless,
    write_video,
    write_zero_frames,
)

CFG = MotionRecipeConfig(size=96, stride=2, max_frames=None, segment_frames=8, min_source_side=32)
GOOD = {"square.mkv", "frames/square", "vfr.mkv", "cut.mp4", "still.mp4"}
REJECTED = {
    "empty.mp4": "empty file",
    "garbage.mp4": "corrupt video",
    "zero_frames.mkv": "corrupt video",  # a header and no frame: the container ends before any packet
    "audio.mp4": "no video stream",
    "codec.avi": "unsupported codec",
    "tiny.mp4": "too small",
    "notes.txt": "not a video",
}


def square_masks(count: int) -> list[np.ndarray]:
    """Ground truth of moving_square_frames: the square's pixels in each frame."""
    masks = []
    for i in range(count):
        mask = np.zeros((96, 128), np.uint8)
        mask[28:68, 8 + 2 * i : 48 + 2 * i] = 255
        masks.append(mask)
    return masks


@pytest.fixture(scope="module")
def video_tree(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("motion")
    frames = moving_square_frames(24)
    write_lossless(root / "square.mkv", frames)
    write_frame_folder(root / "frames" / "square", frames)
    write_video(root / "vfr.mkv", frames, pts_ms=[40 * i + (10 if i % 3 == 0 else 0) for i in range(24)])
    other = moving_square_frames(24, seed=5)
    write_video(root / "cut.mp4", frames[:12] + [(f * 0.3).astype(np.uint8) for f in other[12:]])  # a dark shot
    write_video(root / "still.mp4", [frames[0]] * 12)
    (root / "empty.mp4").write_bytes(b"")
    (root / "garbage.mp4").write_bytes(b"\x00\x01garbage" * 500)
    write_audio_only(root / "audio.mp4")
    write_zero_frames(root / "zero_frames.mkv")
    avi = write_video(root / "codec_src.avi", frames[:6], codec="mpeg4").read_bytes()
    (root / "codec.avi").write_bytes(avi.replace(b"FMP4", b"ZZZZ"))
    (root / "codec_src.avi").unlink()
    write_video(root / "tiny.mp4", [cv2.resize(f, (24, 16)) for f in frames[:6]])
    (root / "notes.txt").write_text("not a video")
    return root


@pytest.fixture(scope="module")
def built(video_tree, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("motion-shards") / "motion"
    build("motion", video_tree, out, CFG, workers=0, samples_per_shard=6, show_progress=False)
    return out


def masks_by_frame(out: Path, source: str) -> dict[int, np.ndarray]:
    index = {r["key"]: r for r in pq.read_table(out / "index.parquet").to_pylist() if r["source"] == source}
    found = {}
    for tar in sorted(out.glob("*.tar")):
        for sample in iter_tar_samples(tar):
            if sample["__key__"] in index:
                found[index[sample["__key__"]]["frame"]] = decode_png(sample["mask.png"])
    return found


def test_every_video_is_written_or_rejected_with_its_reason(built):
    manifest = json.loads((built / MANIFEST_FILE).read_text())
    rejects = pq.read_table(built / "rejects.parquet").to_pylist()
    index = pq.read_table(built / "index.parquet").to_pylist()
    rejected = {r["source"]: r["reason"] for r in rejects if r["kind"] == "rejected"}
    assert rejected == REJECTED
    assert {r["source"] for r in index} | set(rejected) | {r["source"] for r in rejects} == GOOD | set(REJECTED)
    assert manifest["source"]["inputs"] == len(GOOD) + len(REJECTED)
    assert manifest["totals"]["samples"] == len(index) and manifest["totals"]["rejected"] == len(REJECTED)


def test_every_considered_frame_is_a_sample_or_filtered_with_a_reason(built):
    index = pq.read_table(built / "index.parquet").to_pylist()
    filtered = [r for r in pq.read_table(built / "rejects.parquet").to_pylist() if r["kind"] == "filtered"]
    for source, count in (("square.mkv", 24), ("frames/square", 24), ("still.mp4", 12)):
        frames = sorted(
            [r["frame"] for r in index if r["source"] == source]
            + [r["frame"] for r in filtered if r["source"] == source]
        )
        assert frames == list(range(0, count, CFG.stride)), source
    still = {r["reason"] for r in filtered if r["source"] == "still.mp4"}
    assert still <= {"foreground below 3%", "partners on one side only"}
    # the first considered frame has no earlier frame, the last of "still" no later one: one side only
    one_side = sorted((r["source"], r["frame"]) for r in filtered if r["reason"] == "partners on one side only")
    assert ("square.mkv", 0) in one_side and ("still.mp4", 0) in one_side
    assert not [r for r in filtered if r["reason"].startswith("no partner")]
    assert not [r for r in filtered if r["source"] == "cut.mp4" and r["reason"] == "scene cut"]


def test_partners_stop_at_a_scene_cut():
    from pipelines.recipes.motion import partner_frames
    from pipelines.videos import Frame

    from .videokit import moving_square_frames as shot

    frames = shot(4) + [(f * 0.3).astype(np.uint8) for f in shot(4, seed=5)]  # a cut between 3 and 4
    window = {i: Frame(i, None, rgb) for i, rgb in enumerate(frames)}
    cfg = CFG.mask
    assert {d: f.index for d, f in partner_frames(window[2], window, cfg).items()} == {1: 3, -1: 1, -2: 0}
    assert {d: f.index for d, f in partner_frames(window[4], window, cfg).items()} == {1: 5, 2: 6}


def test_masks_of_the_moving_square_match_ground_truth(built):
    truth = square_masks(24)
    masks = masks_by_frame(built, "square.mkv")
    assert len(masks) >= 8
    for frame, mask in masks.items():
        inter = np.count_nonzero((mask > 0) & (truth[frame] > 0))
        union = np.count_nonzero((mask > 0) | (truth[frame] > 0))
        assert inter / union > 0.7, frame


def test_frame_folder_and_video_file_give_the_same_masks(built):
    from_file, from_folder = masks_by_frame(built, "square.mkv"), masks_by_frame(built, "frames/square")
    assert from_file.keys() == from_folder.keys() and len(from_file) >= 8
    assert all(np.array_equal(from_file[k], from_folder[k]) for k in from_file)


def test_segmenting_does_not_change_the_samples(video_tree, built, tmp_path):
    one_segment = MotionRecipeConfig(**{**vars(CFG), "segment_frames": 1000})
    build("motion", video_tree, tmp_path / "one", one_segment, workers=0, samples_per_shard=6, show_progress=False)
    for source in ("square.mkv", "vfr.mkv"):
        a, b = masks_by_frame(built, source), masks_by_frame(tmp_path / "one", source)
        assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


@pytest.mark.ray
def test_two_ray_workers_build_the_sample_videos(ray_session, tmp_path):
    from pipelines.motion.synthetic import write_synthetic_videos

    write_synthetic_videos(tmp_path / "sample")
    cfg = MotionRecipeConfig(stride=4, max_frames=6)
    manifest = build(
        "motion",
        tmp_path / "sample" / "videos",
        tmp_path / "ray",
        cfg,
        workers=2,
        samples_per_shard=8,
        show_progress=False,
    ).manifest
    local = build(
        "motion",
        tmp_path / "sample" / "videos",
        tmp_path / "local",
        cfg,
        workers=0,
        samples_per_shard=8,
        show_progress=False,
    ).manifest
    assert manifest["totals"]["samples"] > 5 and manifest["totals"]["rejected"] == 0
    assert manifest["shardlist"] == local["shardlist"]  # same bytes (md5) whichever worker built them


def test_preview_draws_frames_of_different_videos(built, tmp_path):
    from pipelines.preview import spread_keys, write_contact_sheet

    index = {r["key"]: r["source"] for r in pq.read_table(built / "index.parquet").to_pylist()}
    sources = set(index.values())
    picks = spread_keys(built, len(sources))
    assert {index[k] for k in picks} == sources  # one frame of every video before a second of any
    more = spread_keys(built, len(sources) + 2)
    assert len(more) == len(sources) + 2 and set(picks) <= set(more)
    sheet = cv2.imread(str(write_contact_sheet(built, tmp_path / "sheet.png", count=len(sources))))
    assert sheet is not None and sheet.shape[0] > len(sources) * 90
