"""Checkpoints survive a kill mid-write; schedules and task-per-rank weights are what the docs say."""

from __future__ import annotations

import multiprocessing
import os
import signal
from pathlib import Path

import numpy as np
import pytest
import torch

from mtssl.train import checkpoint as ckpt
from mtssl.train.config import ConfigError, TrainConfig
from mtssl.train.distributed import assign_tasks, loss_weights, ranks_per_task
from mtssl.train.logging import LOG_FILE, read_log
from mtssl.train.loop import train
from mtssl.train.schedule import warmup_then_decay


def _die_mid_write(run: str, state: dict) -> None:
    """Child process: write half of a checkpoint's bytes to its temporary file, then get SIGKILLed."""

    def half_then_kill(tmp, path):
        data = Path(tmp).read_bytes()
        Path(tmp).write_bytes(data[: len(data) // 2])
        os.kill(os.getpid(), signal.SIGKILL)

    ckpt.finish = half_then_kill  # the fsync and rename never happen
    ckpt.save_checkpoint(Path(run), state)


@pytest.mark.slow
def test_a_kill_during_a_checkpoint_write_leaves_the_previous_one(tiny_config):
    cfg = tiny_config(steps=4, save_every=2)
    train(cfg)
    run = Path(cfg.out)
    state = ckpt.load_checkpoint(run / "ckpt-00000004.pt")

    child = multiprocessing.get_context("fork").Process(target=_die_mid_write, args=(str(run), {**state, "step": 6}))
    child.start()
    child.join(30)
    assert child.exitcode == -signal.SIGKILL
    assert list(run.glob(".ckpt-00000006.pt.*.tmp")), "the child died with its temporary file half written"
    assert not (run / "ckpt-00000006.pt").exists()
    assert (run / ckpt.LATEST).read_text().strip() == "ckpt-00000004.pt"
    path, loaded = ckpt.load_latest(run)
    assert path.name == "ckpt-00000004.pt" and loaded["step"] == 4

    train(TrainConfig(**{**cfg.__dict__, "steps": 6}), resume=True)  # --resume picks the previous checkpoint
    steps = [r["step"] for r in read_log(run / LOG_FILE) if "loss" in r]
    assert steps == [1, 2, 3, 4, 5, 6]
    assert not list(run.glob("*.tmp")) and [s for s, _ in ckpt.checkpoints(run)] == [4, 6]


def test_a_damaged_newest_checkpoint_falls_back_to_the_previous(tmp_path):
    ckpt.save_checkpoint(tmp_path, {"step": 1, "w": torch.ones(2)})
    ckpt.save_checkpoint(tmp_path, {"step": 2, "w": torch.zeros(2)})
    (tmp_path / "ckpt-00000002.pt").write_bytes(b"not a checkpoint")
    with pytest.warns(UserWarning, match="damaged checkpoint ckpt-00000002.pt: not a weights-only"):
        path, state = ckpt.load_latest(tmp_path)
    assert state["step"] == 1 and torch.equal(state["w"], torch.ones(2))


def test_checkpoints_refuse_pickled_objects(tmp_path):
    ckpt.save_atomic({"step": 1, "config": TrainConfig()}, tmp_path / "ckpt-00000001.pt")
    with pytest.warns(UserWarning, match="damaged"), pytest.raises(ckpt.DamagedCheckpoints, match="all 1 "):
        ckpt.load_latest(tmp_path)


def test_rng_states_round_trip():
    generator = torch.Generator().manual_seed(3)
    state = ckpt.rng_state(generator)
    expected = (torch.rand(3), np.random.rand(3), torch.rand(3, generator=generator))
    torch.manual_seed(99)
    np.random.seed(99)
    ckpt.set_rng_state(state, generator)
    got = (torch.rand(3), np.random.rand(3), torch.rand(3, generator=generator))
    assert torch.equal(got[0], expected[0]) and np.array_equal(got[1], expected[1]) and torch.equal(got[2], expected[2])


def test_warmup_then_cosine_and_step_decay():
    lrs = warmup_then_decay(1.0, 10, warmup=4, decay="cosine", final=0.1)
    assert len(lrs) == 10 and lrs[:4].tolist() == [0.25, 0.5, 0.75, 1.0]
    assert lrs[4] == pytest.approx(1.0) and np.all(np.diff(lrs[4:]) < 0) and lrs[-1] > 0.1
    steps = warmup_then_decay(1.0, 7, warmup=1, decay="step", step_every=2, gamma=0.5)
    assert steps.tolist() == [1.0, 1.0, 1.0, 0.5, 0.5, 0.25, 0.25]


def test_task_per_rank_weights_make_the_ddp_average_the_all_tasks_sum():
    tasks = ("relpos", "color", "exemplar")
    assert [assign_tasks(tasks, "task-per-rank", r, 4) for r in range(4)] == [
        ("relpos",),
        ("color",),
        ("exemplar",),
        ("relpos",),
    ]
    assert ranks_per_task(tasks, "task-per-rank", 4) == {"relpos": 2, "color": 1, "exemplar": 1}
    weights = loss_weights(tasks, "task-per-rank", 4)
    # DDP averages over 4 ranks: relpos gets (2 x 2) / 4 = 1 mean, color and exemplar 4 / 4 = 1 each
    assert weights == {"relpos": 2.0, "color": 4.0, "exemplar": 4.0}
    assert loss_weights(tasks, "all-tasks", 4) == dict.fromkeys(tasks, 1.0)
    with pytest.raises(ConfigError, match="at least one rank per task"):
        assign_tasks(tasks, "task-per-rank", 0, 2)


def test_damaged_checkpoints_are_reported_once_in_one_line_and_all_damaged_is_its_own_error(tiny_config):
    import warnings

    from mtssl.train.checkpoint import DamagedCheckpoints, load_latest

    cfg = tiny_config(steps=4, save_every=2, keep=2)
    train(cfg)
    run = Path(cfg.out)
    newest, older = run / "ckpt-00000004.pt", run / "ckpt-00000002.pt"
    newest.write_bytes(newest.read_bytes()[:1000])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert load_latest(run)[0] == older
        assert load_latest(run)[0] == older  # the same damage is not reported twice
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1 and "ckpt-00000004.pt" in messages[0]
    assert "\n" not in messages[0] and "weights_only=False" not in messages[0]
    older.write_bytes(b"junk")
    with pytest.raises(DamagedCheckpoints, match="all 2 checkpoints"):
        load_latest(run)
