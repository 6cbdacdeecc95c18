"""``--tensorboard``: log keys become TensorBoard tags, a tiny run's event files hold every logged scalar and
the lasso picture, a resume purges the stale tail, an interrupt still closes the writer, and a missing
package is one line before any work."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import mtssl.train.loop as loop
from mtssl.tasks import TASKS
from mtssl.train.config import ConfigError, TrainConfig
from mtssl.train.interrupt import Interrupted
from mtssl.train.logging import LOG_FILE, read_log
from mtssl.train.tensorboard import LASSO_IMAGE, NEEDS_PACKAGE, TB_DIR, Board, scalars, tag_of


def test_log_keys_map_to_tags():
    record = {
        "step": 40,
        "lr": 0.001,
        "loss": 5.5,
        "lasso_penalty": 0.01,
        "data_wait": 0.2,
        "step_s": 0.5,
        "relpos_loss": 2.0,
        "relpos_acc": 0.25,
        "motion_loss": 0.7,
        "motion_iou": 0.1,
        "relpos_samples_per_s": 64.0,
        "val_relpos_loss": 2.1,
        "val_relpos_acc": 0.2,
        "val_motion_iou": 0.3,
        "lasso": {"relpos": [0.0, 0.5, 1.0], "motion": [0.1, 0.2, 0.3]},
        "bad_shards": {"relpos": 2},
        "stopped": {"color": 20},
        "ranks_in_sync": True,
    }
    assert scalars(record) == {
        "lr": 0.001,
        "train/loss": 5.5,
        "train/lasso_penalty": 0.01,
        "data_wait": 0.2,
        "step_s": 0.5,
        "train/relpos/loss": 2.0,
        "train/relpos/metric": 0.25,
        "train/motion/loss": 0.7,
        "train/motion/metric": 0.1,
        "samples_per_s/relpos": 64.0,
        "val/relpos/loss": 2.1,
        "val/relpos/metric": 0.2,
        "val/motion/metric": 0.3,
        "lasso/relpos/unit1": 0.0,
        "lasso/relpos/unit2": 0.5,
        "lasso/relpos/unit3": 1.0,
        "lasso/motion/unit1": 0.1,
        "lasso/motion/unit2": 0.2,
        "lasso/motion/unit3": 0.3,
        "bad_shards/relpos": 2.0,
    }
    assert scalars({"step": 7, "event": "val", "val_color_loss": 3.0}) == {"val/color/loss": 3.0}
    assert scalars({"step": 7, "event": "task_stopped", "task": "color", "best_val_loss": 1.0, "best_step": 3}) == {}
    assert scalars({"step": 9, "event": "end", "param_digests": ["ab"], "ranks_in_sync": True}) == {}
    # 23 units (ResNet-101): zero-padded, so that TensorBoard sorts them in order
    assert list(scalars({"step": 1, "lasso": {"jigsaw": [0.0] * 23}}))[::11] == [
        "lasso/jigsaw/unit01",
        "lasso/jigsaw/unit12",
        "lasso/jigsaw/unit23",
    ]
    assert tag_of("val_something_new") == "val/something_new" and tag_of("gpu_mem") == "gpu_mem"


def events(run: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(Path(run) / TB_DIR), size_guidance={"scalars": 0, "images": 0})
    return accumulator.Reload()


def assert_board_equals_log(run: Path) -> None:
    """Every scalar of every log.jsonl record is in TensorBoard at its step, and nothing else."""
    board = events(run)
    logged: dict[str, dict[int, float]] = {}
    for record in read_log(Path(run) / LOG_FILE):
        for tag, value in scalars(record).items():
            logged.setdefault(tag, {})[record["step"]] = value
    assert set(board.Tags()["scalars"]) == set(logged)
    for tag, by_step in logged.items():
        got = {e.step: e.value for e in board.Scalars(tag)}
        assert got == pytest.approx(by_step, rel=1e-6, abs=1e-7), tag


def test_a_run_writes_its_log_and_lasso_to_tensorboard(tiny_config):
    pytest.importorskip("tensorboard")
    cfg = tiny_config(steps=4, save_every=2, val_every=2, tensorboard=True)
    loop.train(cfg)
    board = events(Path(cfg.out))
    tags = set(board.Tags()["scalars"])
    for task in TASKS:
        assert {f"train/{task}/loss", f"train/{task}/metric", f"samples_per_s/{task}"} <= tags, task
        assert {f"lasso/{task}/unit1", f"lasso/{task}/unit2"} <= tags, task
    assert {"val/motion/loss", "val/motion/metric", "lr", "data_wait", "train/loss"} <= tags  # motion: 3 shards
    assert [e.step for e in board.Scalars("train/relpos/loss")] == [1, 2, 3, 4]
    assert [e.step for e in board.Scalars("val/motion/loss")] == [2, 4]
    images = board.Images(LASSO_IMAGE)
    assert [i.step for i in images] == [2, 4]  # one per checkpoint
    assert images[-1].encoded_image_string[:8] == b"\x89PNG\r\n\x1a\n" and images[-1].width > 100
    assert_board_equals_log(Path(cfg.out))


def test_a_resume_appends_and_purges_the_stale_tail(tiny_config):
    """The newer checkpoint is lost, so the run resumes at step 2 and redoes 3 and 4: TensorBoard shows each
    step once, with the resumed run's values (those log.jsonl keeps)."""
    pytest.importorskip("tensorboard")
    cfg = tiny_config(steps=4, save_every=2, keep=2, val_every=2, tensorboard=True)
    loop.train(cfg)
    run = Path(cfg.out)
    first = {e.step: e.value for e in events(run).Scalars("train/loss")}
    (run / "ckpt-00000004.pt").unlink()
    loop.train(cfg, resume=True)
    assert len(list((run / TB_DIR).glob("events.out.tfevents.*"))) == 2  # appended: one file per process
    board = events(run)
    again = {e.step: e.value for e in board.Scalars("train/loss")}
    assert sorted(again) == [1, 2, 3, 4] and [again[1], again[2]] == [first[1], first[2]]
    assert [i.step for i in board.Images(LASSO_IMAGE)] == [2, 4]
    assert_board_equals_log(run)


def test_an_interrupted_run_still_closes_its_writer(tiny_config, monkeypatch):
    """Ctrl-C at step 3, before any checkpoint: what was logged reached the event file all the same."""
    pytest.importorskip("tensorboard")
    real_step = loop.train_step
    calls = []

    def step_then_interrupt(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_step(*args, **kwargs)

    closed = []
    real_close = Board.close

    def close(self):
        closed.append(self.writer is not None)  # an open writer
        real_close(self)

    monkeypatch.setattr(loop, "train_step", step_then_interrupt)
    monkeypatch.setattr(Board, "close", close)
    cfg = tiny_config(steps=6, save_every=6, tasks=("relpos",), tensorboard=True)
    with pytest.raises(Interrupted):
        loop.train(cfg)
    assert closed == [True]
    assert [e.step for e in events(Path(cfg.out)).Scalars("train/relpos/loss")] == [1, 2]


def test_without_the_package_the_option_is_one_line_before_any_work(tiny_config, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # `import tensorboard` now fails
    cfg = tiny_config(tensorboard=True)
    with pytest.raises(ConfigError, match="needs the tensorboard package"):
        loop.train(cfg)
    assert not Path(cfg.out).exists()

    from mtssl.train.cli import app

    out = tmp_path / "cli-run"
    result = CliRunner().invoke(app, ["--out", str(out), "--tensorboard", "--device", "cpu"])
    assert result.exit_code == 2
    assert result.output.strip() == f"error: {NEEDS_PACKAGE}"
    assert not out.exists()


def test_tensorboard_is_off_by_default_and_a_resume_may_switch_it_on():
    from mtssl.train.config import RESUME_MAY_CHANGE

    assert TrainConfig().tensorboard is False and "tensorboard" in RESUME_MAY_CHANGE


@pytest.mark.slow
def test_under_torchrun_rank_zero_alone_writes_the_events(shard_root, tmp_path):
    pytest.importorskip("tensorboard")
    from .test_ddp import torchrun

    run = tmp_path / "run"
    torchrun(shard_root, run, "--tasks", "relpos,color", "--tensorboard")
    assert len(list((run / TB_DIR).glob("events.out.tfevents.*"))) == 1
    assert_board_equals_log(run)
