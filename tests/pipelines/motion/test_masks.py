import dataclasses
import json

import cv2
import numpy as np
import pytest

from mtssl.contract.frames import iou
from pipelines.motion.camera import fit_camera, make_flow, model_flow, texture_map, to_gray
from pipelines.motion.config import PRESETS, MaskConfig, quality_config
from pipelines.motion.masks import motion_mask, motion_mask_at, naive_from_flow, naive_mask, translation_from_flow
from pipelines.motion.pairing import filter_reason, is_scene_cut
from pipelines.motion.regions import border_share, combine_evidence, grabcut_refine

CFG = MaskConfig()


@pytest.fixture(scope="module")
def dis():
    cv2.setNumThreads(1)
    return make_flow(CFG)


def around(frames: list[np.ndarray], t: int, cfg: MaskConfig = CFG) -> dict[int, np.ndarray]:
    """Frame t's partners that exist, keyed by offset."""
    return {d: frames[t + d] for d in cfg.offsets() if 0 <= t + d < len(frames)}


def test_pure_pan_and_zoom_gives_a_nearly_empty_mask(pan_zoom_frames, dis):
    for t in range(len(pan_zoom_frames)):
        result = motion_mask_at(pan_zoom_frames[t], around(pan_zoom_frames, t), CFG, dis)
        assert result.stats["fg_share"] < 0.02, (t, result.stats)
        assert result.stats["model"] == "homography" and result.stats["inlier_ratio"] > 0.8
        assert result.stats["pairs"] == len(around(pan_zoom_frames, t))
        assert filter_reason(result.stats, CFG) == "foreground below 3%"


def test_moving_square_over_a_panning_background_is_found(square_scene, dis):
    frames, truth = square_scene
    scores = []
    for t in range(len(frames)):
        result = motion_mask_at(frames[t], around(frames, t), CFG, dis)
        assert result.mask.dtype == np.uint8 and result.mask.shape == truth[t].shape
        assert set(np.unique(result.mask)) <= {0, 255}
        scores.append(iou(result.mask, truth[t]))
    assert min(scores) >= 0.8, scores


def test_fast_quality_is_the_single_forward_pair(square_scene, dis):
    fast = quality_config("fast")
    assert fast.offsets() == [3] and not fast.grabcut
    frames, truth = square_scene
    assert iou(motion_mask(frames[0], frames[3], fast, dis, gap=3).mask, truth[0]) >= 0.8
    with pytest.raises(ValueError, match="quality"):
        quality_config("slow")


def test_naive_baseline_is_clearly_worse_under_camera_motion(square_scene, dis):
    frames, truth = square_scene
    method = [iou(motion_mask_at(frames[t], around(frames, t), CFG, dis).mask, truth[t]) for t in (1, 3, 5)]
    naive = [iou(naive_mask(frames[t], frames[t + 2], CFG, dis), truth[t]) for t in (1, 3, 5)]
    assert np.mean(method) - np.mean(naive) >= 0.4, (method, naive)


def test_naive_baseline_matches_the_method_when_the_camera_is_still(dis):
    from skimage import data

    background = cv2.resize(data.chelsea(), (336, 256))
    patch = cv2.resize(data.coffee()[100:300, 200:400], (80, 80))
    frames, truth = [], []
    for t in (0, 3):
        frame = background.copy()
        frame[90:170, 100 + 2 * t : 180 + 2 * t] = patch
        mask = np.zeros((256, 336), np.uint8)
        mask[90:170, 100 + 2 * t : 180 + 2 * t] = 255
        frames.append(frame)
        truth.append(mask)
    method = iou(motion_mask(frames[0], frames[1], CFG, dis).mask, truth[0])
    naive = iou(naive_mask(frames[0], frames[1], CFG, dis), truth[0])
    assert method > 0.7 and abs(method - naive) < 0.1


def test_identical_frames_give_an_empty_mask(pan_zoom_frames, dis):
    result = motion_mask(pan_zoom_frames[0], pan_zoom_frames[0], CFG, dis)
    assert not result.mask.any()
    assert result.stats["fg_share"] == 0.0 and result.stats["model"] == "homography"


@pytest.mark.parametrize("value", [0, 128, 255])
def test_uniform_frames_do_not_raise(value, dis):
    flat = np.full((256, 336, 3), value, np.uint8)
    other = np.full((256, 336, 3), (value + 40) % 256, np.uint8)
    for later in (flat, other):
        result = motion_mask(flat, later, CFG, dis)
        assert not result.mask.any() and result.stats["model"] == "none"
        assert not naive_mask(flat, later, CFG, dis).any()


def test_unrelated_noise_frames_do_not_raise(dis):
    rng = np.random.default_rng(0)
    a, b = (rng.integers(0, 256, (256, 336, 3), dtype=np.uint8) for _ in range(2))
    result = motion_mask(a, b, CFG, dis)
    assert result.mask.shape == (256, 336)
    json.dumps(result.stats)  # JSON-able whatever happened


@pytest.mark.parametrize("shape", [(8, 8), (12, 40), (16, 16), (40, 60)])
def test_tiny_frames_do_not_raise(shape):
    rng = np.random.default_rng(1)
    frame = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    result = motion_mask(frame, np.roll(frame, 1, axis=1), CFG)
    assert result.mask.shape == shape
    assert naive_mask(frame, frame, CFG).shape == shape


def test_gray_frames_work_and_sizes_must_match(pan_zoom_frames, dis):
    gray = [to_gray(f) for f in pan_zoom_frames[:4]]
    assert motion_mask(gray[0], gray[3], CFG, dis).stats["fg_share"] < 0.02
    with pytest.raises(ValueError, match="sizes differ"):
        motion_mask(gray[0], gray[1][:100], CFG, dis)


def test_camera_fit_recovers_a_known_homography():
    from skimage import data

    frame = cv2.cvtColor(cv2.resize(data.astronaut(), (336, 256)), cv2.COLOR_RGB2GRAY)
    truth = np.array([[1.01, 0.004, 2.5], [-0.003, 1.01, -1.5], [1e-5, -2e-5, 1.0]])
    true_flow = model_flow(truth, frame.shape)
    fit = fit_camera(true_flow, texture_map(frame), CFG)
    assert fit.model == "homography" and fit.inlier_ratio > 0.99
    assert np.abs(model_flow(fit.matrix, frame.shape) - true_flow).max() < 0.05


def test_camera_fit_falls_back_to_none_without_texture():
    flow = np.zeros((64, 64, 2), np.float32)
    fit = fit_camera(flow, np.zeros((64, 64), np.float32), CFG)
    assert fit.model == "none" and fit.matrix is None and not model_flow(None, (64, 64)).any()


def test_filter_reasons_for_crafted_stats():
    def reason(fg: float, border: float = 0.0) -> str | None:
        return filter_reason({"fg_share": fg, "border_share": border}, CFG)

    assert reason(0.25) is None
    assert reason(0.02) == "foreground below 3%"
    assert reason(0.85) == "foreground above 80%"
    assert reason(0.30, border=0.2) == "foreground on border"
    assert reason(0.30, border=0.10) is None  # "more than 10%"
    loose = MaskConfig(min_fg=0.02, max_fg=0.95, max_border_fg=0.5)
    assert filter_reason({"fg_share": 0.05, "border_share": 0.2}, loose) is None


def test_filter_defaults_are_pathaks_but_the_smallest_foreground():
    # Pathak's 10% keeps 18% of DAVIS frames, whose objects cover 2-12% of the frame
    assert (CFG.min_fg, CFG.max_fg, CFG.border_width, CFG.max_border_fg) == (0.03, 0.80, 0.05, 0.10)


def test_border_share_counts_the_band_only():
    mask = np.zeros((100, 200), np.uint8)
    mask[40:60, 80:120] = 255  # in the middle: no border foreground
    assert border_share(mask, 0.05) == 0.0
    mask[:5, :] = 255  # the whole top band (5% of 100 rows)
    band = 100 * 200 - 90 * 180
    assert border_share(mask, 0.05) == pytest.approx(5 * 200 / band)


def test_scene_cut_detector(pan_zoom_frames):
    from skimage import data

    other = cv2.resize(data.coffee(), (336, 256))
    assert not is_scene_cut(pan_zoom_frames[0], pan_zoom_frames[5])
    assert not is_scene_cut(pan_zoom_frames[0], pan_zoom_frames[0])
    assert is_scene_cut(pan_zoom_frames[0], other)


def test_presets_and_unknown_preset():
    assert set(PRESETS) == {"ultrafast", "fast", "medium"}
    with pytest.raises(ValueError, match="preset"):
        make_flow(MaskConfig(preset="slow"))


def test_forward_backward_check_runs(square_scene, dis):
    frames, truth = square_scene
    cfg = MaskConfig(fb_check=True)
    assert iou(motion_mask_at(frames[2], around(frames, 2, cfg), cfg, dis).mask, truth[2]) >= 0.8


def test_masks_are_deterministic(square_scene):
    frames, _ = square_scene
    a = motion_mask_at(frames[2], around(frames, 2), CFG, make_flow(CFG))
    b = motion_mask_at(frames[2], around(frames, 2), CFG, make_flow(CFG))
    assert np.array_equal(a.mask, b.mask) and a.stats == b.stats


def test_config_checks_its_gaps_and_combination():
    assert MaskConfig(gaps=(2, 1)).offsets() == [1, -1, 2, -2]
    assert MaskConfig(gaps=(1, 2), bidirectional=False).offsets() == [1, 2]
    with pytest.raises(ValueError, match="gaps"):
        MaskConfig(gaps=(0,))
    with pytest.raises(ValueError, match="combine"):
        MaskConfig(combine="mean")


def test_min_over_directions_drops_what_only_one_direction_sees():
    """Forward flow smears the occluder's motion over what it is about to cover, backward flow over
    what it has just uncovered: the two smears lie on opposite sides, the object in both."""
    obj = np.zeros((8, 12), np.float32)
    obj[2:6, 4:8] = 3.0
    ahead, behind = obj.copy(), obj.copy()
    ahead[2:6, 8:10] = 3.0  # forward smear, ahead of the object
    behind[2:6, 2:4] = 3.0  # backward smear, behind it
    combined = combine_evidence({1: ahead, -1: behind}, "min")
    assert np.array_equal(combined > 1, obj > 1)
    assert np.array_equal(combine_evidence({1: ahead}, "min"), ahead)  # one pair: as it is


def test_directional_combination_keeps_an_object_that_pauses_for_one_gap():
    moving = np.zeros((8, 12), np.float32)
    moving[2:6, 4:8] = 3.0
    paused = np.zeros_like(moving)  # t -> t + 1: the object stands still for that one frame
    evidence = {1: paused, -1: moving, 2: moving, -2: moving}
    assert not (combine_evidence(evidence, "min") > 1).any()  # the default pays for robustness here
    assert np.array_equal(combine_evidence(evidence, "directional") > 1, moving > 1)


def test_grabcut_snaps_a_loose_motion_mask_to_the_object():
    from skimage import data

    frame = cv2.resize(data.chelsea(), (336, 256))  # an orange cat on a grey-green background: no texture noise
    truth = np.zeros((256, 336), np.uint8)
    cv2.ellipse(truth, (168, 128), (70, 50), 0, 0, 360, 255, -1)
    scene = frame.copy()
    scene[truth > 0] = (230, 40, 40)
    loose = cv2.dilate(truth, np.ones((9, 9), np.uint8))  # flow masks bleed over the object's edges
    short = truth.copy()
    short[:90], short[:, 225:] = 0, 0  # and miss parts of it: GrabCut claims them within its band
    assert iou(loose, truth) < 0.86 and iou(short, truth) < 0.89
    # at 1/2 resolution (the default) the cut keeps a ring about 1 px wide around this clean edge: 0.94
    for scale, tight in ((1, 0.99), (2, 0.93), (3, 0.95)):
        cfg = dataclasses.replace(CFG, grabcut_scale=scale)
        refined = grabcut_refine(loose, scene, cfg)
        assert iou(refined, truth) > tight, scale
        assert np.array_equal(grabcut_refine(loose, scene, cfg), refined)  # deterministic
        assert iou(grabcut_refine(short, scene, cfg), truth) > 0.92, scale
    speck = np.zeros_like(truth)
    speck[10:14, 10:14] = 255  # too small for a core: left alone
    assert np.array_equal(grabcut_refine(speck, scene, CFG), speck)


def test_baselines_are_flow_magnitude_and_flow_minus_its_median():
    from skimage import data

    gray = to_gray(cv2.resize(data.astronaut(), (336, 256)))
    pan = np.zeros((256, 336, 2), np.float32)
    pan[..., 0] = 4.0
    pan[100:160, 120:200, 0] = 12.0  # an object moving faster than the pan
    truth = np.zeros((256, 336), np.uint8)
    truth[100:160, 120:200] = 255
    assert iou(naive_from_flow(pan, gray, CFG), truth) > 0.6
    assert iou(translation_from_flow(pan, gray, CFG), truth) > 0.6
    pan[100:160, 120:200, 0] = 0.0  # the object stands still, the camera pans: the flow baseline misses it
    assert iou(naive_from_flow(pan, gray, CFG), truth) < 0.2
    assert iou(translation_from_flow(pan, gray, CFG), truth) > 0.6
    assert not naive_from_flow(np.zeros_like(pan), gray, CFG).any()
