"""``mtssl-eval motion``: the motion head scored as a segmenter (J per frame, sequence and overall), the flow masks
beside it from the producer's ``score-motion`` run as a subprocess, and the contract's sequence reader, which must
read what the producer reads."""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest
import torch
from rich.console import Console
from typer.testing import CliRunner

from mtssl.contract.frames import list_sequences, load_ground_truth, read_frames
from mtssl.eval.cli import app
from mtssl.eval.motion import (
    DEFAULT_SIZE,
    MotionEvalError,
    evaluate_motion,
    load_motion_network,
    merge_flow,
    motion_recipe,
    network_predictor,
    resize_logits,
    run_size,
)
from tests.pipelines.videokit import moving_square_frames, write_video

pytestmark = pytest.mark.usefixtures("motion_one_thread")
MOTION_FRAME = (48, 64)  # the fixture's frames and masks (height, width)


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


@pytest.mark.slow  # starts the producer's score-motion
def test_flow_scores_the_same_frames_and_the_head_on_them(motion_run, motion_davis):
    from pipelines.motion.config import MaskConfig
    from pipelines.motion.evaluate import score_tree

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
    direct = score_tree(videos, masks, MaskConfig(), size=48)["sequences"]["slide"]["frames"]  # in this process
    assert [r["iou"] for r in slide["flow_per_frame"]] == [r["iou"] for r in direct if not r["gt_empty"]]


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


@pytest.mark.slow  # starts the producer's score-motion
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
    lines = [line.rstrip() for line in result.stdout.splitlines() if not line.startswith("wrote ")]
    assert max(len(line) for line in lines) <= 80  # the table and its legend fit a terminal
    assert any(line.startswith("mean of 2") for line in lines)
    assert f"wrote {out}" in result.stdout and "J (mean IoU)" in result.stdout  # J stays a fraction: no % sign
    assert "%" not in result.stdout
    failed = CliRunner().invoke(app, ["motion", "--run", str(run), "--videos", str(videos), "--masks", str(tmp_path)])
    assert failed.exit_code == 2 and failed.stderr.startswith("error: no frames under")
    assert len(failed.stderr.strip().splitlines()) == 1


def test_the_contract_lists_and_reads_sequences_as_the_producer_does(motion_davis):
    """Frame folders and a video file: the same sources, names and frame order, and the same pixels at the
    working size, so the head (read through the contract) and the flow (read by the producer) see one video."""
    from pipelines.motion.evaluate import sequence_name
    from pipelines.videos import OPEN_END, iter_frames, list_video_tree

    videos, masks = motion_davis
    write_video(videos / "clip.mp4", moving_square_frames(count=5))
    (videos / "notes.txt").write_text("not a video")
    ours, theirs = list_sequences(videos), list_video_tree(videos)
    assert [(s.relpath, s.kind, s.frames, s.name) for s in ours] == [
        (s.relpath, s.kind, s.frames, sequence_name(s)) for s in theirs
    ]
    assert {s.kind for s in ours} == {"frames", "file", "other"}
    for mine, source in zip(ours, theirs, strict=True):
        if source.kind != "other":
            expected = [f.rgb for f in iter_frames(videos, source, 0, OPEN_END, 40)]
            got = read_frames(videos, mine, 40)
            assert len(got) == len(expected) and all(np.array_equal(a, b) for a, b in zip(got, expected, strict=True))
    truth = load_ground_truth(masks / "drop")
    assert [t.shape for t in truth] == [MOTION_FRAME] * 3 and [int(t.max()) for t in truth] == [255] * 3


@pytest.mark.slow  # starts the producer's score-motion
def test_a_frame_that_cannot_be_decoded_skips_its_sequence_with_and_without_flow(motion_run, motion_davis):
    videos, masks = motion_davis
    run, frame = motion_run(), videos / "drop" / "00001.jpg"
    frame.write_bytes(frame.read_bytes()[:200])  # cut short
    for flow in (False, True):
        results = evaluate_motion(run, videos, masks, size=48, flow=flow, predict=oracle, console=quiet())
        assert set(results["sequences"]) == {"slide"}
        assert results["skipped"]["drop"].startswith("damaged frame: frame 1: frame file 00001.jpg unusable")


def flow_row(frame: int, iou: float, kept: bool, gt_empty: bool = False) -> dict:
    """A per-frame row as ``score-motion --json`` writes it (its other figures included)."""
    row = {"frame": frame, "partners": [frame + 1], "iou": iou, "kept": kept, "gt_empty": gt_empty}
    return {**row, "reason": None if kept else "too little foreground", "recall": 1.0, "stats": {"fg_share": 0.1}}


def test_the_flow_is_merged_by_sequence_and_source_and_its_skips_are_kept():
    scored = {
        "sequences": {
            "a": {"source": "x/a", "frames": [flow_row(0, 0.5, True), flow_row(1, 1.0, False, gt_empty=True)]},
            "b": {"source": "elsewhere/b", "frames": [flow_row(0, 0.5, True)]},
        },
        "skipped": {"z/c": "damaged frame: frame 3: a refused packet"},
    }
    heads = {"a": ("x/a", [0.25, 0.75]), "b": ("y/b", [1.0]), "c": ("z/c", [0.0, 0.0])}
    skipped: dict[str, str] = {}
    sequences = merge_flow(heads, scored, skipped)
    assert list(sequences) == ["a"]
    a = sequences["a"]
    assert a["flow_per_frame"] == [{"frame": 0, "partners": [1], "iou": 0.5, "kept": True, "reason": None}]
    assert (a["head_j"], a["head_j_flow_frames"], a["flow_j"], a["flow_frames"]) == (0.5, 0.25, 0.5, 1)
    assert skipped == {"y/b": "not scored by mtssl-data score-motion", "z/c": scored["skipped"]["z/c"]}
    assert merge_flow(heads, None, {})["b"]["flow_frames"] == 0  # --no-flow


@pytest.mark.slow  # starts the producer's score-motion
def test_a_second_source_of_a_name_is_skipped_by_both_evaluators(motion_run, motion_davis):
    videos, masks = motion_davis
    shutil.copytree(videos / "slide", videos / "zz" / "slide")  # listed after slide/
    results = evaluate_motion(motion_run(), videos, masks, size=48, flow=True, predict=oracle, console=quiet())
    assert results["skipped"] == {"zz/slide": "duplicate sequence name"}
    assert results["sequences"]["slide"]["flow_frames"] == 4


@pytest.mark.slow  # starts the producer's score-motion
def test_the_runs_mask_settings_reach_the_flow_scoring(motion_run, motion_davis):
    videos, masks = motion_davis
    run = motion_run(recipe_size=48)
    manifest = run.parent / f"{run.name}-shards" / "motion" / "manifest.json"

    def with_mask(mask: dict) -> None:
        manifest.write_text(json.dumps({"task": "motion", "config": {"recipe": {"size": 48, "mask": mask}}}))

    with_mask({"gaps": [1], "bidirectional": False, "a setting of another version": 1})
    results = evaluate_motion(run, videos, masks, flow=True, predict=oracle, console=quiet())
    assert results["flow_config"]["gaps"] == [1] and results["flow_config"]["bidirectional"] is False
    assert [r["partners"] for r in results["sequences"]["slide"]["flow_per_frame"]] == [[1], [2], [3]]
    with_mask({"gaps": []})
    with pytest.raises(MotionEvalError, match=r"--mask-config: gaps must be positive .*pass --no-flow"):
        evaluate_motion(run, videos, masks, flow=True, predict=oracle, console=quiet())


def test_the_table_goes_to_stdout_and_the_skipped_sources_to_stderr():
    """Results on the console (stdout), diagnostics (skipped sources) on the errors console (stderr)."""
    from mtssl.eval.motion_table import print_results

    row = {"frames": 3, "head_j": 0.5}
    results = {
        "step": 7, "size": 48, "sequences": {"slide": row}, "overall": {**row, "sequences": 1},
        "empty_sequences": ["blank"], "skipped": {"drop": "damaged frame: frame 1", "x.txt": "not a video"},
        "seconds": {"read": 0.1, "head": 0.2},
    }  # fmt: skip
    out, err = quiet(), quiet()
    print_results(results, out, flow=False, errors=err)
    shown, said = out.export_text(), err.export_text()
    assert "slide" in shown and "0.500" in shown and "blank" in shown and "skipped" not in shown
    assert said.splitlines() == [
        "skipped drop: damaged frame: frame 1",
        "skipped 1 file(s) that are not videos or frames",
    ]
