"""``mtssl-eval motion``: the motion head scored as a segmenter (J per frame, sequence and overall)."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch
from rich.console import Console
from typer.testing import CliRunner

from mtssl.eval.cli import app
from mtssl.eval.motion import (
    DEFAULT_SIZE,
    MotionEvalError,
    evaluate_motion,
    load_motion_network,
    motion_recipe,
    network_predictor,
    resize_logits,
    run_size,
)

pytestmark = pytest.mark.usefixtures("motion_one_thread")


def oracle(frames: np.ndarray, shape: tuple[int, int]) -> torch.Tensor:
    """+10 where the frame is bright (the fixture's foreground, = its ground truth), -10 elsewhere."""
    bright = [cv2.resize((f.mean(axis=2) > 128).astype(np.uint8), shape[::-1], interpolation=0) for f in frames]
    return torch.from_numpy(np.stack(bright)).float() * 20 - 10


def background(frames: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    return np.full((len(frames), *shape), -10.0, np.float32)


def quiet() -> Console:
    return Console(width=200, record=True)


def test_a_head_that_outputs_the_ground_truth_scores_one(motion_run, motion_davis):
    videos, masks = motion_davis
    results = evaluate_motion(motion_run(), videos, masks, size=48, flow=False, predict=oracle, console=quiet())
    assert set(results["sequences"]) == {"slide", "drop"}
    for seq in results["sequences"].values():
        assert seq["head_j"] == 1.0
        assert seq["head_iou"] == [1.0] * seq["frames"]
        assert seq["flow_j"] is None
    assert results["overall"]["head_j"] == 1.0
    assert results["overall"]["frames"] == 7


def test_a_head_that_predicts_background_scores_zero(motion_run, motion_davis):
    videos, masks = motion_davis
    results = evaluate_motion(motion_run(), videos, masks, size=48, flow=False, predict=background, console=quiet())
    assert [s["head_j"] for s in results["sequences"].values()] == [0.0, 0.0]
    assert results["overall"]["head_j"] == 0.0


def test_empty_ground_truth_is_listed_apart(motion_run, motion_davis):
    videos, masks = motion_davis
    console = quiet()
    results = evaluate_motion(motion_run(), videos, masks, size=48, flow=False, predict=background, console=console)
    assert results["empty_sequences"] == ["blank"]
    assert "blank" not in results["sequences"]
    assert results["overall"]["sequences"] == 2
    assert "ground truth empty on every frame (not scored): blank" in console.export_text()


def test_flow_scores_the_same_frames_and_the_head_on_them(motion_run, motion_davis):
    videos, masks = motion_davis
    results = evaluate_motion(motion_run(), videos, masks, size=48, flow=True, predict=oracle, console=quiet())
    slide = results["sequences"]["slide"]
    # gaps 1 and 2 both ways on 4 frames: every frame has a partner
    assert [row["frame"] for row in slide["flow_per_frame"]] == [0, 1, 2, 3]
    assert slide["flow_per_frame"][0]["partners"] == [1, 2] and slide["flow_per_frame"][3]["partners"] == [2, 1]
    assert slide["frames"] == 4 and slide["flow_frames"] == 4
    assert slide["head_j_flow_frames"] == 1.0 and slide["flow_j"] is not None
    drop = results["sequences"]["drop"]
    assert drop["flow_frames"] == 3 and results["overall"]["flow_frames"] == 7
    assert results["overall"]["flow_frames"] == sum(s["flow_frames"] for s in results["sequences"].values())


def test_missing_folders_raise(motion_run, motion_davis, tmp_path):
    videos, masks = motion_davis
    run = motion_run()
    with pytest.raises(MotionEvalError, match="--masks .* is not a folder"):
        evaluate_motion(run, videos, tmp_path / "nowhere", console=quiet())
    with pytest.raises(MotionEvalError, match="--videos .* is not a folder"):
        evaluate_motion(run, tmp_path / "nowhere", masks, console=quiet())
    (tmp_path / "other").mkdir()
    with pytest.raises(MotionEvalError, match="no frames under .* paired with masks"):
        evaluate_motion(run, videos, tmp_path / "other", console=quiet())


def test_a_run_without_checkpoint_or_motion_head_raises(motion_run, motion_davis, tmp_path):
    videos, masks = motion_davis
    (tmp_path / "empty-run").mkdir()
    with pytest.raises(MotionEvalError, match="no checkpoint"):
        evaluate_motion(tmp_path / "empty-run", videos, masks, console=quiet())
    with pytest.raises(MotionEvalError, match="does not exist"):
        evaluate_motion(tmp_path / "no-run", videos, masks, console=quiet())
    with pytest.raises(MotionEvalError, match="no motion head"):
        load_motion_network(motion_run("relpos-run", tasks=("relpos",)))


def test_the_working_size_is_the_runs(motion_run):
    assert run_size(motion_recipe(motion_run("a", recipe_size=48))) == 48
    assert run_size(motion_recipe(motion_run("b"))) == DEFAULT_SIZE  # no manifest where config.json points


def test_logits_of_a_side_that_is_not_a_multiple_of_16_map_onto_the_frame(motion_run):
    logits = torch.full((1, 1, 12, 3), -1.0)  # ceil(40 / 16) * 4 rows: they cover 48 px of a 40-px frame
    logits[:, :, :5] = 1.0  # the top 20 px
    pred = resize_logits(logits, (40, 12), (80, 24), stride=4) > 0
    assert pred.shape == (1, 80, 24)
    assert pred[0, :38].all() and not pred[0, 42:].any()
    net, _ = load_motion_network(motion_run())
    frames = np.random.default_rng(0).integers(0, 256, (3, 40, 72, 3), dtype=np.uint8)
    assert network_predictor(net, torch.device("cpu"))(frames, (80, 144)).shape == (3, 80, 144)


def test_end_to_end_cli_with_an_untrained_network(motion_run, motion_davis, tmp_path):
    videos, masks = motion_davis
    run, out = motion_run(recipe_size=48, step=7), tmp_path / "motion.json"
    args = ["motion", "--run", str(run), "--videos", str(videos), "--masks", str(masks), "--json", str(out)]
    result = CliRunner().invoke(app, [*args, "--device", "cpu"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    saved = json.loads(out.read_text())
    assert {"run", "step", "size", "sequences", "overall", "empty_sequences"} <= set(saved)
    assert (saved["step"], saved["size"], saved["empty_sequences"]) == (7, 48, ["blank"])
    keys = {"frames", "head_j", "flow_frames", "head_j_flow_frames", "flow_j", "kept", "head_j_kept", "flow_j_kept"}
    for seq in saved["sequences"].values():
        assert keys <= set(seq) and 0.0 <= seq["head_j"] <= 1.0
    assert keys <= set(saved["overall"]) and saved["overall"]["frames"] == 7
    lines = [line.rstrip() for line in result.output.splitlines()]
    assert max(len(line) for line in lines) <= 80  # the table and its legend fit a terminal
    assert any(line.startswith("mean of 2") for line in lines)
    failed = CliRunner().invoke(app, ["motion", "--run", str(run), "--videos", str(videos), "--masks", str(tmp_path)])
    assert failed.exit_code == 2 and "error: no frames under" in failed.output
