import numpy as np
import pytest

from pipelines.motion.masks import MaskConfig
from pipelines.motion.score import aggregate_rows, iou, load_davis_sequence, overall, partner, score_sequence

CFG = MaskConfig()


def test_iou_conventions():
    empty = np.zeros((4, 4), np.uint8)
    full = np.full((4, 4), 255, np.uint8)
    half = full.copy()
    half[:2] = 0
    assert iou(empty, empty) == 1.0  # nothing to find, nothing found
    assert iou(full, empty) == 0.0 and iou(empty, full) == 0.0
    assert iou(half, full) == 0.5 and iou(full, full) == 1.0
    assert iou(half > 0, half) == 1.0  # bool and 0/255 masks alike


def test_partner_forward_then_backward(pan_zoom_frames):
    frames = pan_zoom_frames  # 8 frames of one shot
    assert [partner(t, frames, 3) for t in range(8)] == [3, 4, 5, 6, 7, 2, 3, 4]
    assert partner(0, frames[:3], 3) is None


def test_partner_avoids_a_scene_cut(pan_zoom_frames):
    import cv2
    from skimage import data

    other = cv2.resize(data.coffee(), (336, 256))
    frames = [*pan_zoom_frames[:4], other, other, other, other]  # cut before frame 4
    assert partner(2, frames, 2) == 0  # 2 + 2 lies across the cut
    assert partner(4, frames, 2) == 6  # after the cut, forward again
    assert partner(3, frames, 3) == 0
    assert partner(1, frames, 3) is None  # 4 lies across the cut, -2 does not exist


def test_score_sequence_on_the_moving_square(square_scene):
    frames, truth = square_scene
    result = score_sequence(frames, truth, CFG)
    assert result["scored"] == len(frames)
    assert [r["frame"] for r in result["frames"]] == list(range(len(frames)))
    assert result["j_all"] >= 0.8
    assert result["naive_j_all"] <= result["j_all"] - 0.5
    assert result["kept"] == sum(r["kept"] for r in result["frames"])
    for row in result["frames"]:
        assert 0.0 <= row["iou"] <= 1.0 and row["reason"] in (None, "foreground below 10%", "foreground on border")


def test_score_sequence_needs_one_mask_per_frame(square_scene):
    frames, truth = square_scene
    with pytest.raises(ValueError, match="masks"):
        score_sequence(frames, truth[:-1], CFG)


def test_aggregates_and_overall():
    rows = [
        {"iou": 0.8, "naive_iou": 0.2, "naive_fixed_iou": 0.4, "kept": True},
        {"iou": 0.6, "naive_iou": 0.0, "naive_fixed_iou": 0.2, "kept": False},
    ]
    agg = aggregate_rows(rows)
    expected = {"scored": 2, "kept": 1, "j_all": 0.7, "j_kept": 0.8, "naive_j_all": 0.1, "naive_j_kept": 0.2}
    assert agg == pytest.approx({**expected, "naive_fixed_j_all": 0.3, "naive_fixed_j_kept": 0.4})
    none_kept = aggregate_rows([{"iou": 1.0, "naive_iou": 1.0, "naive_fixed_iou": 1.0, "kept": False}])
    assert none_kept["j_kept"] is None and none_kept["j_all"] == 1.0
    total = overall({"a": agg, "b": none_kept})
    assert total["j_all"] == pytest.approx(0.85)  # mean of sequences
    assert total["j_kept"] == pytest.approx(0.8)  # b has no kept frame
    assert total["scored"] == 3 and total["kept"] == 1 and total["sequences"] == 2


def test_load_davis_sequence(tmp_path, square_scene):
    import cv2

    frames, truth = square_scene
    (tmp_path / "f").mkdir()
    (tmp_path / "m").mkdir()
    for t in range(3):
        cv2.imwrite(str(tmp_path / "f" / f"{t:05d}.jpg"), frames[t][..., ::-1])
        cv2.imwrite(str(tmp_path / "m" / f"{t:05d}.png"), truth[t])
    images, masks = load_davis_sequence(tmp_path / "f", tmp_path / "m")
    assert len(images) == 3 and images[0].shape == frames[0].shape
    assert np.array_equal(masks[1], truth[1] > 0)
    (tmp_path / "m" / "00002.png").unlink()
    with pytest.raises(FileNotFoundError):
        load_davis_sequence(tmp_path / "f", tmp_path / "m")
