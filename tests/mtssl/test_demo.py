"""``mtssl-demo``'s steps at a reduced size: pretrain (train, reuse, replace), probe every labelled set, report.

The producer's ``mtssl-data demo`` is too slow for the suite: the trainer's tiny fixture shard sets stand in
for its shards, and ``demo_config`` is narrowed to a width-8 trunk with tiny heads and crops that fit them.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import mtssl.demo as demo
import mtssl.train.loop
from mtssl.train.config import TrainConfig
from mtssl.train.logging import LOG_FILE, read_log

from .shardkit import build_sets

pytestmark = pytest.mark.slow  # starts processes

TINY = {
    "relpos": {"patch_channels": 8, "patch_dim": 32, "pair_dims": (32,), "crop": 24, "flip": True},
    "color": {"hidden": 32, "crop": 32},
    "exemplar": {"hidden": 32, "dim": 16, "crop": 24},
    "motion": {"hidden": 16, "crop": 64},
}


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The consumer tests' tiny sets (``shardkit``), built once for this module."""
    return build_sets(tmp_path_factory.mktemp("demo-data"))


def write_labelled(root: Path, per_class: int = 4) -> Path:
    """``root/shapes/{train,val}/<class>/*.jpg`` (two classes that differ in brightness and layout), and an
    incomplete set without ``val`` that the demo skips."""
    ramp = np.linspace(0, 255, 48)
    for split in ("train", "val"):
        for i in range(per_class):
            shade = 12 * i + (5 if split == "val" else 0)
            images = {"dark": np.full((48, 48), 20.0 + shade), "sky": np.tile(ramp[:, None], (1, 48)) * 0.5 + shade}
            for name, gray in images.items():
                folder = root / "shapes" / split / name
                folder.mkdir(parents=True, exist_ok=True)
                bgr = np.stack([gray, gray * 0.8, gray * 0.6], axis=-1).clip(0, 255).astype(np.uint8)
                cv2.imwrite(str(folder / f"{i}.jpg"), bgr)
    (root / "incomplete" / "train" / "dark").mkdir(parents=True)
    return root


@pytest.fixture
def tiny_demo(monkeypatch, tmp_path):
    """``demo_config`` narrowed to a tiny network; one torch thread; the feature cache under ``tmp_path``."""
    original = demo.demo_config

    def tiny_config(shards: Path, run: Path, steps: int, workers: int) -> TrainConfig:
        cfg = original(shards, run, steps, workers)
        assert (cfg.preset, cfg.depth, cfg.steps, cfg.save_every, cfg.progress) == ("cpu", 18, steps, steps, None)
        return replace(cfg, width=8, batch_size=2, task_batch={"exemplar": 2}, task_options=TINY)

    monkeypatch.setattr(demo, "demo_config", tiny_config)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield tiny_config
    torch.set_num_threads(threads)


def steps_of(run: Path) -> list[int]:
    return [r["step"] for r in read_log(run / LOG_FILE) if "loss" in r]


def test_pretrain_trains_then_reuses_then_replaces(shards, tiny_demo, tmp_path, monkeypatch, capsys):
    run = tmp_path / "runs" / "demo"
    assert demo.pretrain(shards, run, 2, 0) == "trained"
    said = capsys.readouterr()  # progress: on stderr, the trainer's step lines too
    assert f"pretraining 2 steps of --preset cpu on {shards} into {run}" in said.err and "reusing" not in said.err
    assert said.out == ""
    assert (run / "trunk.pt").is_file() and (run / "ckpt-00000002.pt").is_file() and steps_of(run) == [2]
    saved = json.loads((run / "config.json").read_text())
    assert (saved["preset"], saved["depth"], saved["width"], saved["steps"]) == ("cpu", 18, 8, 2)

    cfg = tiny_demo(shards, run, 2, 0)
    assert demo.finished_with(run, cfg)
    moved = shutil.copytree(shards, tmp_path / "moved-shards")
    assert demo.finished_with(run, replace(cfg, shards=str(moved), out="moved"))  # paths aside
    assert not demo.finished_with(run, replace(cfg, shards=str(tmp_path / "no-shards")))
    assert not demo.finished_with(run, replace(cfg, steps=3))
    assert not demo.finished_with(run, replace(cfg, width=16))
    assert not demo.finished_with(tmp_path / "nothing", cfg)

    def no_training(*args, **kwargs):
        raise AssertionError("a finished run with the same options must not be trained again")

    with monkeypatch.context() as patch:
        patch.setattr(mtssl.train.loop, "train", no_training)
        trunk = (run / "trunk.pt").read_bytes()
        assert demo.pretrain(shards, run, 2, 0) == "reused"
    assert f"reusing the finished run in {run}" in capsys.readouterr().err
    assert (run / "trunk.pt").read_bytes() == trunk

    assert demo.pretrain(shards, run, 3, 0) == "trained"  # other options: the old run goes
    err = capsys.readouterr().err
    assert f"replacing {run}" in err and "pretraining 3 steps" in err
    assert steps_of(run) == [3] and not (run / "ckpt-00000002.pt").exists()


def test_an_unfinished_run_is_replaced(shards, tiny_demo, tmp_path, capsys):
    run = tmp_path / "run"
    assert demo.pretrain(shards, run, 2, 0) == "trained"
    log = run / LOG_FILE
    log.write_text("\n".join(line for line in log.read_text().splitlines() if '"end"' not in line) + "\n")
    assert not demo.finished_with(run, tiny_demo(shards, run, 2, 0))  # killed before its end record
    capsys.readouterr()
    assert demo.pretrain(shards, run, 2, 0) == "trained"
    assert f"replacing {run}" in capsys.readouterr().err
    assert read_log(log)[-1]["event"] == "end"


def test_probe_all_and_the_report(shards, tiny_demo, tmp_path, capsys):
    run = tmp_path / "run"
    demo.pretrain(shards, run, 2, 0)
    labelled = write_labelled(tmp_path / "labelled")
    written = demo.probe_all(run, labelled, random_seeds=1)
    assert written == {"shapes": run / "probe-shapes.json"}  # the set without val is skipped
    probe = json.loads(written["shapes"].read_text())
    assert probe["dataset"] == "shapes" and probe["classes"] == ["dark", "sky"]
    assert (probe["n_train"], probe["n_val"]) == (8, 8)
    assert any(list((tmp_path / "cache").rglob("*")))  # features were cached where the test said
    page = demo.write_report(run, tmp_path / "report")
    assert page == tmp_path / "report" / "index.html"
    html = page.read_text()
    assert "<html" in html and "run" in html and "shapes" in html


def test_the_whole_demo_twice(shards, tiny_demo, tmp_path, monkeypatch):
    """``mtssl-demo`` end to end with the producer's step replaced by a copy of the fixture sets."""
    labelled = write_labelled(tmp_path / "sample" / "labelled")
    built = []

    def build_shards(data: Path, out: Path, workers: int) -> None:
        built.append((data, out, workers))
        if not out.exists():
            shutil.copytree(shards, out)

    monkeypatch.setattr(demo, "build_shards", build_shards)
    data, out_shards, run, report = tmp_path / "sample", tmp_path / "shards", tmp_path / "runs" / "demo", tmp_path / "r"
    args = ["--data", str(data), "--shards", str(out_shards), "--run", str(run), "--report", str(report)]
    args += ["--steps", "2", "--workers", "0", "--random-seeds", "1"]
    first = CliRunner().invoke(demo.app, args)
    assert first.exit_code == 0, (first.output, first.exception)
    assert built == [(data, out_shards, 0)]
    assert "mtssl-demo done" in first.stdout and "this one command is the demo" in first.stdout  # the summary
    assert f"run        {run} (trained); trunk {run / 'trunk.pt'}" in first.stdout
    assert f"probe      shapes: {run / 'probe-shapes.json'}" in first.stdout
    assert f"report     {report / 'index.html'}" in first.stdout and (report / "index.html").is_file()
    assert f"previews {out_shards}/<task>/preview.png, shown in the report" in first.stdout
    assert "pretraining 2 steps" in first.stderr and "pretraining" not in first.stdout  # progress on stderr
    assert labelled.is_dir()
    second = CliRunner().invoke(demo.app, args)
    assert second.exit_code == 0, (second.output, second.exception)
    assert "reusing the finished run" in second.stderr and f"{run} (reused)" in second.stdout


def test_the_help_says_it_is_the_one_demo_command():
    result = CliRunner().invoke(demo.app, ["-h"], terminal_width=120)
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    assert "The one demo command" in text and "SHARDS/TASK/preview.png" in text
    assert "<" not in result.output  # words, not Python type names


def test_a_failed_producer_step_is_one_error_line(monkeypatch, tmp_path):
    import subprocess

    monkeypatch.setattr(subprocess, "run", lambda *args, **kwargs: subprocess.CompletedProcess(args, 3))
    result = CliRunner().invoke(demo.app, ["--data", str(tmp_path / "d"), "--shards", str(tmp_path / "s")])
    assert result.exit_code == 3 and result.stdout == ""
    assert result.stderr.startswith("error: building the shard sets failed (exit 3): ")
    assert len(result.stderr.splitlines()) == 1
