"""The clip's evidence (pipelines.motion.clip): a vote of the frames around a frame, carried along the flow."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest

from mtssl.contract.frames import iou
from pipelines.motion.camera import make_flow
from pipelines.motion.clip import ClipMasks, clip_mask_at, compose, vote, warp
from pipelines.motion.config import QUALITY, MaskConfig
from pipelines.motion.masks import motion_mask_at

from .conftest import render

CLIP = dataclasses.replace(MaskConfig(), clip_radius=4, clip_vote=0.5)
PAUSE = 6  # the frame at which the square pauses
PAN = (2.0, 0.0)  # the camera pans 2 px/frame: the background moves -2 px/frame in the frame


@pytest.fixture(scope="module")
def dis():
    cv2.setNumThreads(1)
    return make_flow(CLIP)


def pausing_path(count: int) -> list[tuple[float, float]]:
    """The square's place in each frame: 3 px/frame right and 1 down against the scene, except over the two
    frame intervals around PAUSE, where it rests on the scene (it moves as the background does)."""
    places, x, y = [], 110.0, 80.0
    for s in range(count):
        places.append((x, y))
        still = s in (PAUSE - 1, PAUSE)
        x, y = (x - PAN[0], y) if still else (x + 3.0, y + 1.0)
    return places


@pytest.fixture(scope="module")
def pausing_square() -> tuple[list[np.ndarray], list[np.ndarray]]:
    """13 frames of a textured square over a panning photo; in frame PAUSE it has not moved against the scene
    since the frame before and does not until the frame after: its own flows see nothing move."""
    rendered = [render(t, at, noise_seed=200 + t, pan=PAN, zoom=0.0) for t, at in enumerate(pausing_path(13))]
    return [f for f, _ in rendered], [m for _, m in rendered]


def frames_of(frames: list[np.ndarray]):
    return lambda i: frames[i] if 0 <= i < len(frames) else None


def test_the_clip_recovers_a_frame_whose_own_flows_are_ambiguous(pausing_square, dis):
    frames, truth = pausing_square
    own = ClipMasks(dataclasses.replace(CLIP, clip_radius=0), frames_of(frames), dis).mask_at(PAUSE)
    assert iou(own.mask, truth[PAUSE]) < 0.3, own.stats  # the pause leaves its own pairs nothing to see
    clip = ClipMasks(CLIP, frames_of(frames), dis)
    voted = clip.mask_at(PAUSE)
    assert iou(voted.mask, truth[PAUSE]) >= 0.75, voted.stats
    assert voted.stats["votes"] == 8
    for t in (PAUSE - 3, PAUSE + 3, PAUSE + 4):  # frames that see it move keep it
        assert iou(clip.mask_at(t).mask, truth[t]) >= 0.8, t


def test_the_vote_drops_what_one_frame_alone_marks(pausing_square, dis):
    frames, truth = pausing_square
    clip = ClipMasks(CLIP, frames_of(frames), dis)
    t = PAUSE + 3
    own = clip.per_frame(t)
    spurious = own.result.mask.copy()
    spurious[200:250, 10:60] = 255  # a blob no other frame has
    own.result = dataclasses.replace(own.result, mask=spurious)
    voted = clip.mask_at(t)
    assert not voted.mask[200:250, 10:60].any()
    assert iou(voted.mask, truth[t]) >= 0.8


def test_masks_shapes_values_and_stats(pausing_square, dis):
    frames, _ = pausing_square
    result = ClipMasks(CLIP, frames_of(frames), dis).mask_at(2)
    assert result.mask.shape == frames[2].shape[:2] and result.mask.dtype == np.uint8
    assert set(np.unique(result.mask)) <= {0, 255}
    assert result.stats["votes"] == 6  # frames 0..6 but itself: the video starts 2 frames before it
    assert result.stats["fg_share"] == pytest.approx(np.count_nonzero(result.mask) / result.mask.size, abs=1e-4)
    assert {"model", "inlier_ratio", "pairs", "border_share", "residual_level", "threshold"} <= set(result.stats)


def test_no_radius_is_the_per_frame_mask(pausing_square, dis):
    frames, _ = pausing_square
    cfg = QUALITY["default"]
    for t in (0, 5, 12):
        partners = {d: frames[t + d] for d in cfg.offsets() if 0 <= t + d < len(frames)}
        expected = motion_mask_at(frames[t], partners, cfg, dis)
        got = ClipMasks(cfg, frames_of(frames), dis).mask_at(t)
        assert np.array_equal(got.mask, expected.mask) and got.stats == expected.stats


def test_a_mask_needs_only_the_frames_within_reach(pausing_square, dis):
    """What the build decodes around a frame (``reach`` on each side) gives the mask of the whole video."""
    frames, _ = pausing_square
    whole = ClipMasks(CLIP, frames_of(frames), dis)
    for t in (3, PAUSE, 9):

        def window(i: int, t: int = t) -> np.ndarray | None:
            assert abs(i - t) <= CLIP.reach, f"frame {i} asked for, outside the reach of {t}"
            return frames[i] if 0 <= i < len(frames) else None

        assert np.array_equal(clip_mask_at(t, window, CLIP, dis).mask, whole.mask_at(t).mask)
    assert CLIP.reach == CLIP.max_gap + CLIP.clip_radius


def test_the_vote_stops_at_a_scene_cut(pausing_square, dis):
    frames, _ = pausing_square
    other = [cv2.GaussianBlur(255 - f, (5, 5), 0) for f in frames]  # another shot: nothing like the first
    cut = frames[:7] + other[7:]
    clip = ClipMasks(CLIP, frames_of(cut), dis)
    assert sorted(clip.flows_from(5)) == [-4, -3, -2, -1, 1]  # 6 is the last frame of its shot
    assert sorted(clip.flows_from(8)) == [-1, 1, 2, 3, 4]
    assert clip.mask_at(5).stats["votes"] == 5


def test_forgets_frames_out_of_reach(pausing_square, dis):
    frames, _ = pausing_square
    clip = ClipMasks(CLIP, frames_of(frames), dis)
    for t in range(len(frames)):
        clip.mask_at(t)
        assert min(clip.computed()) >= t - CLIP.reach
    assert len(clip.computed()) <= 2 * CLIP.reach + 1


def test_compose_and_warp_follow_a_translation():
    shape = (40, 60)
    flow = np.zeros((*shape, 2), np.float32)
    flow[..., 0] = 3.0  # every pixel moves 3 px right
    twice = compose(flow, flow)
    assert np.allclose(twice[:, :50, 0], 6.0) and np.allclose(twice[..., 1], 0.0)
    later = np.zeros(shape, np.float32)
    later[10:20, 23:33] = 1.0  # the square 3 px right of where it is in the first frame
    pulled = warp(later, flow)
    assert np.allclose(pulled[10:20, 20:30], 1.0) and pulled.sum() == pytest.approx(100.0)


def test_vote_counts_only_frames_that_see_the_pixel():
    from pipelines.motion.clip import FrameMask
    from pipelines.motion.masks import MaskResult

    cfg = dataclasses.replace(CLIP, clip_vote=0.5)
    shape = (32, 32)
    mine = np.zeros(shape, np.uint8)
    mine[:, :16] = 255
    own = FrameMask(MaskResult(mine, {"fg_share": 0.5, "border_share": 0.0}), {1: np.zeros((*shape, 2), np.float32)})
    away = np.zeros((*shape, 2), np.float32)
    away[..., 0] = 100.0  # carries every pixel out of the other frame: it sees none of them
    result = vote(own, {1: (np.zeros(shape, np.uint8), away)}, cfg)
    assert np.array_equal(result.mask, mine) and result.stats["votes"] == 1
    still = np.zeros((*shape, 2), np.float32)
    result = vote(own, {1: (np.zeros(shape, np.uint8), still), 2: (np.zeros(shape, np.uint8), still)}, cfg)
    assert not result.mask.any()  # one of three


def test_config_checks_the_clip_settings():
    with pytest.raises(ValueError):
        MaskConfig(clip_radius=-1)
    with pytest.raises(ValueError):
        MaskConfig(clip_vote=1.0)
    assert MaskConfig().reach == 2 and MaskConfig(clip_radius=3).reach == 5


def built_masks(out) -> dict[int, np.ndarray]:
    import pyarrow.parquet as pq

    from mtssl.contract import decode_png
    from pipelines.inspect import iter_tar_samples

    frame_of = {r["key"]: r["frame"] for r in pq.read_table(out / "index.parquet").to_pylist()}
    return {
        frame_of[s["__key__"]]: decode_png(s["mask.png"])
        for tar in sorted(out.glob("*.tar"))
        for s in iter_tar_samples(tar)
    }


def test_the_build_stores_the_clip_masks_whatever_the_segments(pausing_square, dis, tmp_path):
    """Segments of 3 frames (each decoding ``reach`` frames on each side) and one segment give the same masks,
    the masks ``score-motion`` scores (ClipMasks over the whole video), the pause recovered."""
    from pipelines.build import build
    from pipelines.recipes.motion import MotionRecipeConfig

    from ..videokit import write_frame_folder

    frames, truth = pausing_square
    write_frame_folder(tmp_path / "videos" / "pause", frames)
    cfg = MotionRecipeConfig(stride=2, max_frames=None, segment_frames=3, mask=CLIP)
    whole = MotionRecipeConfig(stride=2, max_frames=None, segment_frames=1000, mask=CLIP)
    for name, c in (("short", cfg), ("whole", whole)):
        build("motion", tmp_path / "videos", tmp_path / name, c, workers=0, samples_per_shard=4, show_progress=False)
    short, one = built_masks(tmp_path / "short"), built_masks(tmp_path / "whole")
    assert short.keys() == one.keys() and PAUSE in short
    clip = ClipMasks(CLIP, frames_of(frames), dis)
    for t, mask in short.items():
        assert np.array_equal(mask, one[t]) and np.array_equal(mask, clip.mask_at(t).mask), t
    assert iou(short[PAUSE], truth[PAUSE]) >= 0.75
