"""``mtssl-train --config FILE`` and ``--print-config``: file values, precedence, errors, and the run's
own config.json as a config file; the note for a set too small for validation; validation in curves.png."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from mtssl.train.cli import app
from mtssl.train.config import ConfigError
from mtssl.train.config_file import read_config_file
from mtssl.train.plots import plot_curves

from ..shardkit import TINY_TASK_OPTIONS


def tiny_yaml(shard_root: Path, out: Path, **extra) -> dict:
    return {
        "shards": str(shard_root),
        "out": str(out),
        "tasks": "relpos,motion",
        "depth": 18,
        "width": 8,
        "batch_size": 2,
        "workers": 0,
        "steps": 2,
        "warmup_steps": 0,
        "log_every": 1,
        "device": "cpu",
        "progress": False,
        "augment": False,
        "task_options": {t: dict(TINY_TASK_OPTIONS[t]) for t in ("relpos", "motion")},
        **extra,
    }


def write(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(json.loads(json.dumps(data))))
    return path


def print_config(*args: str) -> str:
    result = CliRunner().invoke(app, [*args, "--print-config"])
    assert result.exit_code == 0, (result.output, result.exception)
    return result.stdout


def test_file_values_are_used_the_command_line_wins_and_the_file_beats_the_preset(shard_root, tmp_path):
    cfg_file = write(tmp_path / "run.yaml", tiny_yaml(shard_root, tmp_path / "run", preset="cpu", lr=5e-4))
    text = print_config("--config", str(cfg_file), "--steps", "7")
    resolved = yaml.safe_load(text)
    assert resolved["steps"] == 7  # the command line
    assert resolved["lr"] == 5e-4 and resolved["width"] == 8  # the file, over the preset's 2e-4 and 32
    assert resolved["save_every"] == 600 and resolved["preset"] == "cpu"  # the preset, named by the file
    assert resolved["tasks"] == ["relpos", "motion"]
    assert "over --config" in text.splitlines()[0]
    assert not (tmp_path / "run").exists()  # nothing trained, nothing written


def test_print_config_lists_each_shard_set_with_its_samples_and_is_itself_a_config(shard_root, tmp_path):
    cfg_file = write(tmp_path / "run.yaml", tiny_yaml(shard_root, tmp_path / "run"))
    text = print_config("--config", str(cfg_file))
    sets = [line for line in text.splitlines() if line.startswith("#   ")]
    assert [line.split()[1] for line in sets] == ["relpos", "motion"]
    manifest = json.loads((shard_root / "motion" / "manifest.json").read_text())
    assert f"{manifest['totals']['samples']:,} samples" in sets[1] and "held out for validation" in sets[1]
    assert "too few shards for validation" in sets[0]
    again = write(tmp_path / "again.yaml", yaml.safe_load(text))
    assert print_config("--config", str(again)).splitlines()[1:] == text.splitlines()[1:]


def test_a_finished_runs_config_json_is_a_valid_config_file(shard_root, tmp_path):
    cfg_file = write(tmp_path / "run.yaml", tiny_yaml(shard_root, tmp_path / "run"))
    result = CliRunner().invoke(app, ["--config", str(cfg_file)])
    assert result.exit_code == 0, (result.output, result.exception)
    assert "note: the relpos shard set has" in result.stderr and "no validation loss" in result.stderr
    assert "note: the motion" not in result.stderr  # motion has 3 shards: one is held out
    saved = tmp_path / "run" / "config.json"
    resolved = yaml.safe_load(print_config("--config", str(saved)))
    assert resolved == json.loads(saved.read_text())


@pytest.mark.parametrize(
    "content, words",
    [
        ("batch_sise: 3\n", "no option 'batch_sise' (did you mean batch_size?)"),
        ("steps: many\n", "steps takes an integer, got 'many'"),
        ("lr: [1\n", "not valid YAML (line 2)"),
        ("- steps\n", "not a mapping"),
        ("task_batch: 3\n", "task_batch takes a mapping"),
        ("tasks: [relpos, 3]\n", "tasks takes a list of names"),
    ],
)
def test_a_bad_config_file_is_one_line_and_exit_2(tmp_path, content, words):
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    with pytest.raises(ConfigError, match=None) as caught:
        read_config_file(path)
    assert words in str(caught.value) and str(path) in str(caught.value)
    result = CliRunner().invoke(app, ["--config", str(path), "--print-config"])
    assert result.exit_code == 2 and result.stderr.strip().splitlines() == [f"error: {caught.value}"]


def test_curves_png_draws_the_validation_lines(tmp_path):
    train = [
        {"step": s, "loss": 3 - 0.1 * s, "lr": 1e-3, "relpos_loss": 2 - 0.1 * s, "relpos_acc": 0.1} for s in (1, 2, 3)
    ]
    val = [{"step": s, "event": "val", "val_relpos_loss": 2.5 - 0.1 * s, "val_relpos_acc": 0.2} for s in (1, 3)]
    folders = [tmp_path / kind / "run" for kind in ("train", "both")]  # the same title: the folder's name
    for folder in folders:
        folder.mkdir(parents=True)
    without, with_val = (
        plot_curves(train, folders[0] / "curves.png"),
        plot_curves(train + val, folders[1] / "curves.png"),
    )
    assert without.read_bytes() != with_val.read_bytes()
    assert plot_curves(train, folders[1] / "curves.png").read_bytes() == without.read_bytes()


@pytest.mark.parametrize(
    "words, expected",
    [
        ("mtssl-train --preset ", ["paper", "cpu"]),
        ("mtssl-train --tasks relpos,co", ["relpos,color"]),
        ("mtssl-train --depth 1", ["18", "101"]),
        ("mtssl-train --task-opt motion.cr", ["motion.crop="]),
        ("mtssl-train --task-batch ex", ["exemplar="]),
    ],
)
def test_the_shell_completes_choices_task_names_and_task_options(words, expected):
    env = {
        "_MTSSL_TRAIN_COMPLETE": "complete_bash",
        "COMP_WORDS": words,
        "COMP_CWORD": str(len(words.split()) - (0 if words.endswith(" ") else 1)),
    }
    result = CliRunner().invoke(app, [], prog_name="mtssl-train", env=env)
    assert result.stdout.split() == expected
