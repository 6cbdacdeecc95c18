"""``mtssl-data score-motion`` end to end: the table, ``--json`` with every figure, ``--sheet``, and the
real DAVIS sequences of ``../shared`` at reduced size where they are present."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from pipelines.cli import app

DAVIS = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "davis-train"


def write_davis_layout(root: Path, frames: list[np.ndarray], truth: list[np.ndarray], name: str) -> None:
    (root / "JPEGImages" / name).mkdir(parents=True)
    (root / "Annotations" / name).mkdir(parents=True)
    for t, (rgb, mask) in enumerate(zip(frames, truth, strict=True)):
        cv2.imwrite(str(root / "JPEGImages" / name / f"{t:05d}.jpg"), rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 98])
        cv2.imwrite(str(root / "Annotations" / name / f"{t:05d}.png"), mask)


def test_json_and_sheet_round_trip(square_scene, tmp_path):
    frames, truth = square_scene
    write_davis_layout(tmp_path, frames, truth, "square")
    write_davis_layout(tmp_path, frames, [np.zeros_like(t) for t in truth], "blank")
    out, sheet = tmp_path / "scores.json", tmp_path / "sheet.png"
    args = ["score-motion", "--videos", str(tmp_path / "JPEGImages"), "--masks", str(tmp_path / "Annotations")]
    result = CliRunner().invoke(app, [*args, "--json", str(out), "--sheet", str(sheet)])
    assert result.exit_code == 0, result.output
    assert "overall" in result.output and "ground truth empty on every frame" in result.output
    scores = json.loads(out.read_text())
    square = scores["sequences"]["square"]
    assert len(square["frames"]) == len(frames) and square["j_all"] >= 0.8
    for key in ("kept_share", "recall_kept", "precision_kept", "naive_j_all", "translation_j_all"):
        assert key in square and key in scores["overall"]
    assert scores["overall"]["empty_gt_sequences"] == ["blank"] and scores["overall"]["sequences"] == 1
    assert scores["config"]["gaps"] == [1, 2] and "pictures" not in scores
    picture = cv2.imread(str(sheet))
    assert picture is not None and picture.shape[1] >= 2 * 240  # ground truth beside the mask


def test_fast_quality_and_unknown_quality(square_scene, tmp_path):
    frames, truth = square_scene
    write_davis_layout(tmp_path, frames, truth, "square")
    args = ["score-motion", "--videos", str(tmp_path / "JPEGImages"), "--masks", str(tmp_path / "Annotations")]
    out = tmp_path / "fast.json"
    assert CliRunner().invoke(app, [*args, "--quality", "fast", "--json", str(out)]).exit_code == 0
    assert json.loads(out.read_text())["config"]["gaps"] == [3]
    bad = CliRunner().invoke(app, [*args, "--quality", "slow"])
    assert bad.exit_code != 0 and "quality" in bad.output


@pytest.mark.skipif(not DAVIS.is_dir(), reason="../shared/data/davis-train is not here")
def test_real_davis_sequences_beat_both_baselines(tmp_path):
    """Two real sequences with a moving camera: the method is well above chance and above
    both baselines (flow magnitude; flow minus its median). 12 frames each at the 256-px working size."""
    for name in ("motocross-bumps", "tennis"):
        for part in ("JPEGImages", "Annotations"):
            (tmp_path / part / name).mkdir(parents=True)
            for path in sorted((DAVIS / part / name).iterdir())[:12]:
                (tmp_path / part / name / path.name).symlink_to(path)
    out = tmp_path / "scores.json"
    args = ["score-motion", "--videos", str(tmp_path / "JPEGImages"), "--masks", str(tmp_path / "Annotations")]
    result = CliRunner().invoke(app, [*args, "--json", str(out)])
    assert result.exit_code == 0, result.output
    overall = json.loads(out.read_text())["overall"]
    assert overall["j_all"] >= 0.5 and overall["j_all"] >= overall["naive_j_all"] + 0.3, overall
    assert overall["j_all"] >= overall["translation_j_all"] + 0.03, overall
