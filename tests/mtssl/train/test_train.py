"""Training end to end on tiny shard sets: losses fall, resume repeats the uninterrupted run, logs, exports."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from mtssl.model import ResNetV2Trunk, TrunkConfig
from mtssl.tasks import TASKS
from mtssl.train.checkpoint import LATEST, TRUNK_FILE, checkpoints, load_checkpoint
from mtssl.train.config import ConfigError, TrainConfig
from mtssl.train.logging import LOG_FILE, read_log
from mtssl.train.loop import train


def step_records(run: str | Path) -> list[dict]:
    return [r for r in read_log(Path(run) / LOG_FILE) if "loss" in r]


@pytest.mark.slow
def test_every_task_loss_falls(tiny_config):
    cfg = tiny_config(steps=60, batch_size=8, save_every=60, decay="none")
    train(cfg)
    records = step_records(cfg.out)
    assert [r["step"] for r in records] == list(range(1, 61))
    for task in TASKS:
        losses = [r[f"{task}_loss"] for r in records]
        first, last = np.mean(losses[:10]), np.mean(losses[-10:])
        assert last < 0.9 * first, f"{task}: {first:.3f} -> {last:.3f}"
    curves, lasso = (Path(cfg.out) / name for name in ("curves.png", "lasso.png"))
    assert curves.read_bytes()[:8] == lasso.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert curves.stat().st_size > 10_000 and lasso.stat().st_size > 5_000  # drawn, not blank


def test_resume_from_a_checkpoint_repeats_the_uninterrupted_run(tiny_config, tmp_path):
    """A checkpoint at a stream segment's start resumes bit for bit. Two loader workers, so the resumed run
    also restarts persistent workers' streams."""
    whole = tiny_config(
        steps=8, save_every=4, stream_segment=4, keep=3, workers=2, warmup_steps=2, out=str(tmp_path / "whole")
    )
    train(whole)
    resumed = Path(tmp_path / "resumed")
    resumed.mkdir()
    shutil.copy(Path(whole.out) / "ckpt-00000004.pt", resumed)
    train(TrainConfig(**{**whole.__dict__, "out": str(resumed)}), resume=True)

    expected = {r["step"]: r for r in step_records(whole.out)}
    got = step_records(resumed)
    assert [r["step"] for r in got] == [5, 6, 7, 8]
    for record in got:
        for key in ("loss", *(f"{t}_loss" for t in TASKS), "lasso"):
            assert record[key] == expected[record["step"]][key], (record["step"], key)
    final_whole = load_checkpoint(Path(whole.out) / "ckpt-00000008.pt")["model"]
    final_resumed = load_checkpoint(resumed / "ckpt-00000008.pt")["model"]
    assert all(torch.equal(final_whole[k], final_resumed[k]) for k in final_whole)


def test_checkpoint_holds_the_run_and_loads_weights_only(tiny_config):
    cfg = tiny_config(steps=4, save_every=2, keep=1)
    train(cfg)
    run = Path(cfg.out)
    assert [step for step, _ in checkpoints(run)] == [4]  # keep=1 pruned step 2
    assert (run / LATEST).read_text().strip() == "ckpt-00000004.pt"
    state = load_checkpoint(run / "ckpt-00000004.pt")
    assert state["step"] == 4 and set(state["manifests"]) == set(TASKS)
    assert TrainConfig.from_json(state["config"]) == TrainConfig(**{**cfg.__dict__, "tasks": tuple(TASKS)})
    assert state["lasso"].shape == (len(TASKS), 2) and isinstance(state["rng"]["torch"], torch.Tensor)
    assert state["optimizer"]["state"], "optimizer state (RMSProp averages) is saved"

    export = torch.load(run / TRUNK_FILE, weights_only=True)
    network = json.loads(export["network"])["network"]
    trunk = ResNetV2Trunk(TrunkConfig(network["depth"], network["width"], 1, network["slim_strides"]))
    trunk.load_state_dict(export["trunk"])
    assert torch.equal(trunk.conv1.weight, state["model"]["trunk.conv1.weight"])
    assert export["lasso_rows"] == list(TASKS)


@pytest.mark.slow
def test_log_records_every_task_throughput_wait_and_lasso(tiny_config):
    cfg = tiny_config(steps=4, log_every=2, task_batch={"exemplar": 2})
    train(cfg)
    log = read_log(Path(cfg.out) / LOG_FILE)
    assert [r["step"] for r in log] == [2, 4, 4]  # two records and the end marker
    record = log[1]
    for task in TASKS:
        assert record[f"{task}_samples_per_s"] > 0 and f"{task}_loss" in record
    assert record["relpos_acc"] >= 0 and "color_acc" in record and "motion_iou" in record
    # logged rates are rounded to 0.01: allow that much besides 2%
    assert record["exemplar_samples_per_s"] == pytest.approx(record["relpos_samples_per_s"] / 2, rel=0.02, abs=0.01)
    assert 0 <= record["data_wait"] <= 1 and record["step_s"] > 0
    assert set(record["lasso"]) == set(TASKS) and len(record["lasso"]["color"]) == 2
    assert log[-1]["event"] == "end" and log[-1]["ranks_in_sync"]


def test_a_started_run_is_not_overwritten_and_resume_keeps_its_options(tiny_config):
    from mtssl.train.config import merge_for_resume

    cfg = tiny_config(steps=2, save_every=2)
    train(cfg)
    with pytest.raises(ConfigError, match="already holds a run"):
        train(cfg)
    saved = TrainConfig.from_json(load_checkpoint(Path(cfg.out) / "ckpt-00000002.pt")["config"])
    assert merge_for_resume(saved, {"steps": 10}).steps == 10
    with pytest.raises(ConfigError, match="--depth 50"):
        merge_for_resume(saved, {"depth": 50})


def test_a_subset_of_tasks_and_the_native_mode_train(tiny_config):
    cfg = tiny_config(steps=2, tasks=("relpos", "motion"), input_mode="native", optimizer="adamw", clip_grad=1.0)
    train(cfg)
    record = step_records(cfg.out)[-1]
    assert "relpos_loss" in record and "motion_loss" in record and "color_loss" not in record
    state = load_checkpoint(Path(cfg.out) / "ckpt-00000002.pt")
    assert state["model"]["trunk.conv1.weight"].shape[1] == 3  # RGB trunk


def test_the_cli_resumes_with_the_saved_options_and_refuses_changed_ones(tiny_config):
    from typer.testing import CliRunner

    from mtssl.train.cli import app

    cfg = tiny_config(steps=2, save_every=2)
    train(cfg)
    runner = CliRunner()
    refused = runner.invoke(app, ["--out", cfg.out, "--resume", "--depth", "50"])
    assert refused.exit_code == 2 and "--depth 50" in refused.output and "the run has 18" in refused.output
    resumed = runner.invoke(app, ["--out", cfg.out, "--resume", "--steps", "3", "--no-progress"])
    assert resumed.exit_code == 0, resumed.output
    assert [r["step"] for r in step_records(cfg.out)] == [1, 2, 3]  # depth 18 etc. came from the checkpoint


def test_a_checkpoint_before_the_first_log_record_does_not_crash(tiny_config):
    cfg = tiny_config(steps=4, save_every=1, log_every=3)  # the first checkpoint comes before any log line
    train(cfg)
    run = Path(cfg.out)
    assert [step for step, _ in checkpoints(run)][-1] == 4 and (run / TRUNK_FILE).is_file()


def test_checkpoints_do_not_restart_the_streams(tiny_config, tmp_path):
    """The checkpoint interval changes no batch: runs saving every 2 and every 6 steps take the same steps."""
    runs = []
    for every in (2, 6):
        cfg = tiny_config(steps=6, save_every=every, keep=5, out=str(tmp_path / f"every-{every}"))
        train(cfg)
        runs.append({r["step"]: r["loss"] for r in step_records(cfg.out)})
    assert runs[0] == runs[1]


def test_stream_segments_restart_the_streams(tiny_config, tmp_path):
    """With --stream-segment the streams start again (fresh seeds) at its multiples: other batches."""
    losses = []
    for segment in (0, 3):
        cfg = tiny_config(steps=6, save_every=6, stream_segment=segment, out=str(tmp_path / f"segment-{segment}"))
        train(cfg)
        losses.append({r["step"]: r["loss"] for r in step_records(cfg.out)})
    assert all(losses[0][step] == losses[1][step] for step in (1, 2, 3))
    assert any(losses[0][step] != losses[1][step] for step in (4, 5, 6))
