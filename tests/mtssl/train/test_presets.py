"""``--preset``: a preset replaces the defaults, options typed on the command line win, ``--task-opt`` merges
per field; and the progress display (the rich bar on a terminal, plain lines otherwise)."""

from __future__ import annotations

import copy
import json
import re
import sys
import time
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from mtssl.contract.manifest import Declared
from mtssl.tasks import TASKS
from mtssl.train.cli import app
from mtssl.train.config import TrainConfig
from mtssl.train.logging import _Lines, _NoBar, _RichBar, duration, progress_bar, rate_text
from mtssl.train.presets import PRESETS, preset_values
from mtssl.train.setup import run_options

from ..shardkit import TINY_TASK_OPTIONS


def test_paper_is_the_plain_defaults_and_unknown_presets_raise():
    assert preset_values("paper", {}) == {}
    assert TrainConfig(**preset_values("paper", {})) == TrainConfig()
    with pytest.raises(KeyError, match="unknown preset 'nope'; presets are paper, cpu"):
        preset_values("nope", {})


def test_given_options_win_over_the_preset():
    cpu = preset_values("cpu", {})
    assert cpu["depth"] == 18 and cpu["width"] == 32 and cpu["device"] == "cpu"
    given = {"width": 64, "steps": 7, "device": "auto"}  # 64 and auto are the plain defaults: given still wins
    values = preset_values("cpu", given)
    assert not set(given) & set(values)
    assert {**TrainConfig().__dict__, **values, **given}["width"] == 64
    assert values["depth"] == 18 and values["log_every"] == 20
    assert cpu["lr"] == 2e-4 and "lr" not in preset_values("cpu", {"lr": 1e-3})


def test_task_options_merge_per_field_under_the_given_ones():
    before = copy.deepcopy(PRESETS)
    given = {"task_options": {"relpos": {"crop": 24, "patch_dim": 32}, "motion": {"hidden": 4}}}
    merged = preset_values("cpu", given)["task_options"]
    assert merged == {
        "relpos": {"crop": 24, "flip": True, "patch_dim": 32},  # the given crop, the preset's flip
        "color": {"crop": 176},
        "exemplar": {"crop": 80},
        "motion": {"crop": 160, "hidden": 4},
    }
    assert before == PRESETS  # merging copies: the preset itself is unchanged
    assert preset_values("cpu", {})["task_options"] == before["cpu"]["task_options"]


def test_the_cpu_preset_crops_motion_frames_to_160_as_before_through_the_motion_options():
    cfg = TrainConfig(**preset_values("cpu", {}))
    frames = SimpleNamespace(declared={"frame_side": Declared(256, "--size")})  # a set of 256-px frames
    assert TASKS["motion"].loader_crop(frames, run_options(cfg, "motion")) == 160
    assert TASKS["motion"].loader_crop(frames, run_options(TrainConfig(), "motion")) == 256  # paper: whole side


def test_a_run_saved_with_the_run_options_that_moved_to_the_tasks_loads_them_as_task_options():
    saved = TrainConfig(tasks=("relpos", "motion"), task_options={"relpos": {"crop": 24}})
    old = {**json.loads(saved.to_json()), "patch_size": 64, "motion_crop": 160}
    loaded = TrainConfig.from_json(json.dumps(old))
    assert loaded.task_options == {"relpos": {"crop": 24, "patch_size": 64}, "motion": {"crop": 160}}  # no exemplar
    every_task = {**old, "tasks": None, "motion_crop": None}
    assert TrainConfig.from_json(json.dumps(every_task)).task_options == {
        "relpos": {"crop": 24, "patch_size": 64},
        "exemplar": {"view_size": 64},
    }


def task_opts() -> list[str]:
    return [
        f"--task-opt={task}.{key}={list(value) if isinstance(value, tuple) else value}".replace(" ", "")
        for task, options in TINY_TASK_OPTIONS.items()
        for key, value in options.items()
    ]


def test_cli_preset_cpu_resolves_into_config_json_and_keeps_typed_options(shard_root, tmp_path):
    out = tmp_path / "run"
    args = ["--preset", "cpu", "--shards", str(shard_root), "--out", str(out), "--steps", "2"]
    args += ["--width", "64"]  # typed, and equal to the plain default: it must still beat the preset's 32
    args += ["--workers", "0", "--batch-size", "2", "--task-batch", "exemplar=2", "--task-opt", "motion.crop=64"]
    args += ["--no-augment", "--val-shards", "1", "--val-every", "1", "--val-batches", "1", "--no-progress"]
    args += [*task_opts(), "--task-opt", "relpos.crop=24", "--task-opt", "exemplar.crop=24"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, (result.output, result.exception)
    config = json.loads((out / "config.json").read_text())
    # from the preset
    assert (config["preset"], config["depth"], config["log_every"], config["warmup_steps"]) == ("cpu", 18, 20, 50)
    assert (config["save_every"], config["device"], config["lr"]) == (600, "cpu", 2e-4)
    # typed on the command line
    assert (config["width"], config["steps"], config["workers"], config["batch_size"]) == (64, 2, 0, 2)
    assert config["task_batch"] == {"exemplar": 2}
    assert config["task_options"]["motion"] == {**TINY_TASK_OPTIONS["motion"], "crop": 64}
    assert (config["augment"], config["val_shards"], config["val_every"], config["val_batches"]) == (False, 1, 1, 1)
    # --task-opt merged per field into the preset's task options
    assert config["task_options"]["relpos"] == {
        **TINY_TASK_OPTIONS["relpos"],
        "pair_dims": [32],
        "crop": 24,
        "flip": True,
    }
    assert config["task_options"]["color"] == {"hidden": 32, "crop": 176}
    assert config["task_options"]["exemplar"] == {"hidden": 32, "dim": 16, "crop": 24}
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r.get("event") for r in records] == ["val", None, "end"]  # --val-every 1; --log-every 20 from cpu
    assert "val_motion_loss" in records[1] and "val_relpos_loss" not in records[1]  # motion alone has 3 shards


def test_cli_unknown_preset_exits_2_with_one_line(tmp_path):
    result = CliRunner().invoke(app, ["--preset", "nope", "--shards", str(tmp_path), "--out", str(tmp_path / "run")])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == ["error: --preset: unknown preset 'nope'; presets are paper, cpu"]
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("tty", "kind"), [(True, _RichBar), (False, _Lines)])
def test_progress_none_is_the_bar_on_a_terminal_and_lines_otherwise(monkeypatch, capsys, tty, kind):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: tty)
    with progress_bar(None, 5, 0, samples_per_step=64) as bar:
        assert type(bar) is kind
        bar.update(1)
        time.sleep(0.05)
        bar.update(2, 0.25)
    captured = capsys.readouterr()
    assert captured.out == ""  # progress on stderr: stdout keeps the results
    if tty:
        assert "train" in captured.err and "2/5" in captured.err
    else:  # one plain line per logged step, none for the others: rate (steps and samples) and ETA
        line = re.fullmatch(
            r"step 2/5 loss 0\.2500 \| ([\d.]+) steps/s, ([\d,]+) samples/s \| elapsed 0s, eta (\d+)s\n", captured.err
        )
        assert line, captured.err
        steps_per_s, samples_per_s = float(line[1]), float(line[2].replace(",", ""))
        assert abs(samples_per_s - 64 * steps_per_s) <= 1 and int(line[3]) == round(3 / steps_per_s)


def test_durations_read_as_people_write_them():
    assert [duration(s) for s in (4.4, 65, 3725)] == ["4s", "1m05s", "1h02m"]
    assert rate_text(None, 64) == "- steps/s" and rate_text(2.0, 0) == "2.00 steps/s"


def test_progress_true_and_false_ignore_the_terminal(monkeypatch):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
    with progress_bar(True, 3, 0) as bar:
        assert type(bar) is _RichBar
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    with progress_bar(False, 3, 0) as bar:
        assert type(bar) is _NoBar


def test_a_resumed_bar_starts_at_the_resumed_step(monkeypatch):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    with progress_bar(None, 10, 4) as bar:
        task = bar.progress.tasks[0]
        assert (task.completed, task.total) == (4, 10)
        bar.update(6, 1.5)
        assert task.completed == 6 and task.fields["loss"] == "loss 1.5000"
