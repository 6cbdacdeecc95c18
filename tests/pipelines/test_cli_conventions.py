"""mtssl-data follows the house conventions: results on stdout and diagnostics on stderr, ``--json`` for
scripts, shares as percentages, one ``error:`` line, previews across the set, ``--config FILE.yaml``, shell
completion, and the demo as mtssl-demo's hidden producer step."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import typer
from typer.testing import CliRunner

from pipelines.build_options import build_command
from pipelines.cli import app
from pipelines.recipes import RECIPES

runner = CliRunner()


def flat(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture(scope="module")
def rotation_set(sample_images, tmp_path_factory) -> Path:
    """A small set of the 15-class sample tree (3 images per class): 30 samples in 3 shards."""
    out = tmp_path_factory.mktemp("conventions") / "rotation"
    args = ["build", "rotation", "--images", str(sample_images), "-o", str(out), "--workers", "0"]
    result = runner.invoke(app, [*args, "--samples-per-shard", "10", "--limit", "30", "--size", "64"])
    assert result.exit_code == 0, result.output
    return out


def test_a_build_prints_its_summary_on_stdout_and_its_progress_on_stderr(sample_images, tmp_path):
    images = tmp_path / "images"
    for name in ("brick", "coffee"):
        shutil.copytree(sample_images / name, images / name)
    (images / "brick" / "empty.jpg").write_bytes(b"")
    args = ["build", "rotation", "--images", str(images), "--out", str(tmp_path / "out"), "--workers", "0"]
    result = runner.invoke(app, [*args, "--size", "64"])
    assert result.exit_code == 0, result.output
    summary = flat(result.stdout)
    assert "rotation: 6 samples in 1 shard, 1 input rejected (14.3% of 7)" in summary
    assert f"rejected inputs: 1 empty file (see {tmp_path / 'out' / 'rejects.parquet'})" in summary
    assert "{" not in summary and "by reason" not in summary  # words, not a dict
    assert "build rotation" in result.stderr and "samples in" not in result.stderr


def test_info_prints_its_table_on_stdout(rotation_set):
    result = runner.invoke(app, ["info", str(rotation_set)])
    assert result.exit_code == 0, result.output
    assert "30 in 3 shards" in flat(result.stdout) and "0 (0.0% of the inputs)" in flat(result.stdout)
    assert not result.stderr


def test_info_json_is_one_document_on_stdout(rotation_set):
    result = runner.invoke(app, ["info", str(rotation_set), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["task"] == "rotation" and summary["totals"]["samples"] == 30 and summary["totals"]["shards"] == 3
    assert summary["source"]["inputs"] == 30 and summary["rejects"] == {} and summary["filtered"] == {}
    assert summary["shares"]["rejected"] == 0.0  # a fraction 0..1 in JSON, a percentage for people
    assert len(summary["config_hash"]) == 16 and summary["schema_version"] >= 1


def test_verify_json_reports_problems_and_keeps_the_exit_code(rotation_set, tmp_path):
    result = runner.invoke(app, ["verify", str(rotation_set), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"ok": True, "samples": 30, "shards": 3, "problems": []}
    broken = tmp_path / "broken"
    shutil.copytree(rotation_set, broken)
    (broken / "rotation-000001.tar").unlink()
    result = runner.invoke(app, ["verify", str(broken), "--json"])
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["ok"] is False and any("rotation-000001.tar: missing" in p for p in report["problems"])
    assert result.stderr.strip().splitlines()[-1].startswith("error: ")


@pytest.mark.parametrize("command", ["info", "verify", "preview"])
def test_a_missing_set_is_one_line_saying_it_does_not_exist(command, tmp_path):
    missing = tmp_path / "nope"
    result = runner.invoke(app, [command, str(missing)])
    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: {missing} does not exist" and not result.stdout


def test_preview_draws_across_the_classes_into_the_sets_own_preview_png(rotation_set):
    from pipelines.preview import spread_keys

    label = {row["key"]: row["label"] for row in pq.read_table(rotation_set / "index.parquet").to_pylist()}
    picks = spread_keys(rotation_set, 6, seed=0)
    assert len({label[key] for key in picks}) == 6  # one per class before a second of any, not the first class
    again = spread_keys(rotation_set, 8, seed=0)
    assert list(again)[:6] == list(picks)  # a seeded draw: the same seed draws the same, a larger count extends it
    assert list(spread_keys(rotation_set, 6, seed=1)) != list(picks)
    result = runner.invoke(app, ["preview", str(rotation_set), "--count", "3"])
    assert result.exit_code == 0, result.output
    assert (rotation_set / "preview.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # what mtssl-report shows
    assert str(rotation_set / "preview.png") in flat(result.stdout)


def recording_app(task: str, seen: list) -> typer.Typer:
    """``build TASK`` with the build replaced by recording the config and options it would use."""
    recorder = typer.Typer()
    recorder.command(task)(build_command(RECIPES[task], lambda name, cfg, **options: seen.append((cfg, options))))
    recorder.command("other")(lambda: None)
    return recorder


def test_build_config_file_values_are_used_and_the_command_line_wins(tmp_path):
    config = tmp_path / "motion.yaml"
    config.write_text(
        f"videos: {tmp_path}\nworkers: 0\nquality: fast\nstride: 3\nmask: {{min_fg: 0.1, gaps: [1, 4]}}\n"
        "mask_grabcut: true\n"
    )
    seen: list = []
    result = runner.invoke(recording_app("motion", seen), ["motion", "--config", str(config), "--stride", "7"])
    assert result.exit_code == 0, result.output
    cfg, options = seen[0]
    assert options["source"] == tmp_path and options["workers"] == 0  # the required --videos came from the file
    assert cfg.stride == 7  # the command line wins over the file
    assert cfg.mask.min_fg == 0.1 and cfg.mask.gaps == (1, 4) and cfg.mask.grabcut is True
    assert cfg.mask.bidirectional is False  # the rest is the file's --quality fast


def test_build_config_file_takes_the_relpos_patch_size_and_its_old_name(tmp_path):
    for key in ("patch_size", "patch"):
        (tmp_path / "relpos.yaml").write_text(f"images: {tmp_path}\n{key}: 64\n")
        seen: list = []
        result = runner.invoke(recording_app("relpos", seen), ["relpos", "-c", str(tmp_path / "relpos.yaml")])
        assert result.exit_code == 0, result.output
        assert seen[0][0].patch == 64


def test_build_config_file_refuses_an_unknown_key_or_a_wrong_type_in_one_line(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text(f"videos: {tmp_path}\nmask_min_fgg: 0.1\n")
    result = runner.invoke(app, ["build", "motion", "--config", str(config)])
    assert result.exit_code == 2 and not (tmp_path / "shards").exists()
    assert result.stderr.strip() == (
        f"error: --config {config}: no option 'mask_min_fgg' (did you mean mask_min_fg, mask_max_fg, mask_min_region?)"
    )
    config.write_text(f"videos: {tmp_path}\nworkers: many\n")
    result = runner.invoke(app, ["build", "motion", "--config", str(config)])
    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: --config {config}: workers takes an integer, got 'many'"


def test_quality_completes_its_values_and_the_completion_script_prints(monkeypatch):
    import typer.completion

    monkeypatch.setattr(typer.completion, "_get_shell_name", lambda: "bash")  # not the test runner's parent's shell
    env = {
        "_MTSSL_DATA_COMPLETE": "complete_bash",
        "COMP_WORDS": "mtssl-data build motion --quality ",
        "COMP_CWORD": "4",
    }
    result = runner.invoke(app, [], prog_name="mtssl-data", env=env)
    assert result.stdout.split() == ["default", "fast", "fine", "clip"]
    env |= {"COMP_WORDS": "mtssl-data build motion --mask-preset f", "COMP_CWORD": "4"}
    assert runner.invoke(app, [], prog_name="mtssl-data", env=env).stdout.split() == ["fast"]
    script = runner.invoke(app, ["--show-completion"], prog_name="mtssl-data")
    assert script.exit_code == 0 and "_MTSSL_DATA_COMPLETE=complete_bash" in script.stdout


def test_demo_is_hidden_and_says_it_is_mtssl_demos_producer_step():
    assert "demo" not in flat(runner.invoke(app, ["--help"], env={"COLUMNS": "200"}).stdout).split()
    result = runner.invoke(app, ["demo", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0 and "mtssl-demo's producer step" in flat(result.stdout)


def test_every_command_with_out_takes_o():
    for command in (["build", "color"], ["preview"], ["sample"]):
        assert "-o" in flat(runner.invoke(app, [*command, "--help"], env={"COLUMNS": "200"}).stdout).split()


def test_score_motion_names_the_flow_preset_as_build_motion_does():
    text = flat(runner.invoke(app, ["score-motion", "--help"], env={"COLUMNS": "200"}).stdout)
    assert "--mask-preset ultrafast|fast|medium" in text and "--preset " not in text  # the old name is hidden
    env = {"_MTSSL_DATA_COMPLETE": "complete_bash", "COMP_WORDS": "mtssl-data score-motion --mask-preset u"}
    assert runner.invoke(app, [], prog_name="mtssl-data", env={**env, "COMP_CWORD": "3"}).stdout.split() == [
        "ultrafast"
    ]
