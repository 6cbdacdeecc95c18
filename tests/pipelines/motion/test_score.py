import json

import numpy as np
import pytest

from pipelines.motion.config import MaskConfig
from pipelines.motion.score import (
    aggregate_rows,
    iou,
    load_davis_sequence,
    overall,
    partners,
    recall_precision,
    score_sequence,
)

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


def test_recall_and_precision():
    gt = np.zeros((4, 4), np.uint8)
    gt[:2] = 255
    pred = np.zeros_like(gt)
    pred[:1] = 255
    pred[3, 0] = 255
    assert recall_precision(pred, gt) == pytest.approx((0.5, 0.8))
    assert recall_precision(np.zeros_like(gt), gt) == (0.0, None)
    assert recall_precision(pred, np.zeros_like(gt)) == (None, 0.0)


def test_partners_both_sides_nearest_first(pan_zoom_frames):
    frames = pan_zoom_frames  # 8 frames of one shot
    assert partners(3, frames, CFG) == {1: 4, -1: 2, 2: 5, -2: 1}
    assert partners(0, frames, CFG) == {1: 1, 2: 2}
    assert partners(7, frames, CFG) == {-1: 6, -2: 5}
    forward = MaskConfig(gaps=(3,), bidirectional=False)
    assert partners(4, frames, forward) == {3: 7} and partners(5, frames, forward) == {}


def test_partners_avoid_a_scene_cut(pan_zoom_frames):
    import cv2
    from skimage import data

    other = cv2.resize(data.coffee(), (336, 256))
    frames = [*pan_zoom_frames[:4], other, other, other, other]  # cut before frame 4
    assert partners(3, frames, CFG) == {-1: 2, -2: 1}
    assert partners(4, frames, CFG) == {1: 5, 2: 6}


def test_score_sequence_on_the_moving_square(square_scene):
    frames, truth = square_scene
    result = score_sequence(frames, truth, CFG)
    assert result["scored"] == len(frames) and result["empty_gt_frames"] == 0
    assert [r["frame"] for r in result["frames"]] == list(range(len(frames)))
    assert result["j_all"] >= 0.8
    assert result["naive_j_all"] <= result["j_all"] - 0.3  # the camera pans and zooms
    assert result["kept"] == sum(r["kept"] for r in result["frames"])
    assert result["kept_share"] == result["kept"] / result["scored"]
    assert result["recall_kept"] >= 0.85 and result["precision_kept"] >= 0.85
    json.dumps(result)  # every figure can go to --json


def test_empty_ground_truth_is_counted_apart(square_scene):
    frames, truth = square_scene
    blank = [np.zeros_like(t) for t in truth]
    mixed = score_sequence(frames, [*truth[:6], *blank[6:]], CFG)
    assert mixed["scored"] == 6 and mixed["empty_gt_frames"] == 2
    assert mixed["empty_gt_fg_share"] > 0  # the square still moves: the method marks it
    everything = score_sequence(frames, truth, CFG)
    assert mixed["j_all"] == pytest.approx(np.mean([r["iou"] for r in everything["frames"][:6]]))
    total = overall({"a": mixed, "empty": score_sequence(frames, blank, CFG)})
    assert total["sequences"] == 1 and total["empty_gt_sequences"] == ["empty"]
    assert total["j_all"] == pytest.approx(mixed["j_all"])  # the empty sequence does not lift the mean


def test_score_sequence_needs_one_mask_per_frame(square_scene):
    frames, truth = square_scene
    with pytest.raises(ValueError, match="masks"):
        score_sequence(frames, truth[:-1], CFG)


def _row(iou_, naive, kept, recall=1.0, precision=1.0, empty=False, fg=0.0):
    return {
        "iou": iou_,
        "naive_iou": naive,
        "translation_iou": naive,
        "recall": recall,
        "precision": precision,
        "kept": kept,
        "gt_empty": empty,
        "stats": {"fg_share": fg},
    }


def test_aggregates_and_overall():
    rows = [_row(0.8, 0.2, True, 0.9, 0.7), _row(0.6, 0.0, False), _row(1.0, 1.0, True, None, None, True, 0.05)]
    agg = aggregate_rows(rows)
    assert agg["scored"] == 2 and agg["kept"] == 1 and agg["kept_share"] == 0.5
    assert agg["j_all"] == pytest.approx(0.7) and agg["j_kept"] == pytest.approx(0.8)
    assert agg["naive_j_all"] == pytest.approx(0.1) and agg["translation_j_kept"] == pytest.approx(0.2)
    assert agg["recall_kept"] == pytest.approx(0.9) and agg["precision_kept"] == pytest.approx(0.7)
    assert agg["empty_gt_frames"] == 1 and agg["empty_gt_fg_share"] == pytest.approx(0.05)
    none_kept = aggregate_rows([_row(1.0, 1.0, False)])
    assert none_kept["j_kept"] is None and none_kept["j_all"] == 1.0 and none_kept["kept_share"] == 0.0
    total = overall({"a": agg, "b": none_kept})
    assert total["j_all"] == pytest.approx(0.85)  # mean of sequences
    assert total["j_kept"] == pytest.approx(0.8)  # b has no kept frame
    assert total["scored"] == 3 and total["kept"] == 1 and total["sequences"] == 2
    assert total["kept_share_frames"] == pytest.approx(1 / 3) and total["empty_gt_sequences"] == []


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
