"""Per-task early stopping: the rule on scripted validation losses, and a run in which relpos stops (its head
freezes, its train loss leaves the log, the trunk trains on) and stays stopped across a resume."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch

import mtssl.train.loop as loop
from mtssl.train.checkpoint import load_checkpoint
from mtssl.train.early_stop import EarlyStop
from mtssl.train.logging import LOG_FILE, read_log
from mtssl.train.loop import train

TASKS = ("relpos", "color", "exemplar", "motion")


def feed(stopper: EarlyStop, losses: dict[str, list[float]]) -> dict[int, list[str]]:
    """Validation i (steps 100, 200, ...) reports losses[task][i]; returns the stops per step."""
    out = {}
    for i in range(max(len(v) for v in losses.values())):
        step = 100 * (i + 1)
        scores = {f"val_{t}_loss": v[i] for t, v in losses.items() if i < len(v)}
        newly = stopper.update(scores, step)
        if newly:
            out[step] = newly
    return out


def test_a_task_stops_after_patience_validations_above_its_best_by_the_margin():
    stopper = EarlyStop(TASKS, patience=2, margin=0.2)
    stops = feed(
        stopper,
        {
            "relpos": [2.0, 1.9, 2.2, 2.4, 1.5, 2.3, 2.4],  # 2.4 > 1.9 * 1.2 once; then a new best; then twice
            "color": [3.0, 3.1, 3.5, 3.2, 3.3, 3.4, 3.5],  # noisy, never more than 20% above 3.0
            "motion": [1.0, 1.3, 1.4],  # 30% and 40% above its best twice in a row
        },
    )
    assert stops == {300: ["motion"], 700: ["relpos"]}
    assert stopper.stopped == {"motion": 300, "relpos": 700}
    assert stopper.active() == ["color", "exemplar"]
    assert stopper.watches["relpos"].best == 1.5 and stopper.watches["relpos"].best_step == 500
    assert "relpos stops training at step 700" in stopper.describe("relpos")


def test_a_validation_back_within_the_margin_resets_the_count():
    stopper = EarlyStop(TASKS, patience=2, margin=0.1)
    assert feed(stopper, {"relpos": [1.0, 1.2, 1.05, 1.2, 1.05, 1.2]}) == {}
    assert stopper.watches["relpos"].above == 1


def test_patience_zero_never_stops_and_the_last_task_training_never_stops():
    assert feed(EarlyStop(TASKS, patience=0, margin=0.0), {"relpos": [1.0, 9.0, 9.0, 9.0]}) == {}
    stopper = EarlyStop(("relpos", "color"), patience=1, margin=0.0)
    assert feed(stopper, {"relpos": [1.0, 2.0], "color": [1.0, 2.0]}) == {200: ["relpos"]}
    assert feed(stopper, {"color": [3.0, 4.0]}) == {} and stopper.active() == ["color"]


def test_the_state_round_trips():
    stopper = EarlyStop(TASKS, patience=2, margin=0.2)
    feed(stopper, {"motion": [1.0, 1.3, 1.4], "relpos": [2.0, 2.1]})
    again = EarlyStop(TASKS, patience=2, margin=0.2)
    again.load_state_dict(stopper.state_dict())
    assert again.stopped == {"motion": 300} and again.watches == stopper.watches


def scripted_validation(losses: list[float]):
    """A stand-in for ``loop.validate``: the i-th validation reports relpos's loss ``losses[i]``."""
    calls = []

    def validate(net, val, seed, device):
        calls.append(1)
        return {"val_relpos_loss": losses[min(len(calls), len(losses)) - 1], "val_relpos_acc": 0.5}

    return validate


def relpos_head(path: Path) -> dict[str, torch.Tensor]:
    """Relpos's head and its lasso row (which the L1 penalty must leave alone once relpos stops)."""
    model = load_checkpoint(path)["model"]
    return {k: v for k, v in model.items() if k.startswith("tasks.relpos.") or k == "lasso.alpha.relpos"}


def trunk(path: Path) -> dict[str, torch.Tensor]:
    return {k: v for k, v in load_checkpoint(path)["model"].items() if k.startswith("trunk.")}


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_a_stopped_task_leaves_the_step_and_stays_stopped_on_resume(tiny_config, monkeypatch, capsys):
    monkeypatch.setattr(loop, "validate", scripted_validation([1.0, 0.9, 1.2, 1.3, 1.4, 1.5, 1.6, 1.7]))
    cfg = tiny_config(steps=6, save_every=3, log_every=1, val_every=1, early_stop=1, early_stop_margin=0.2, keep=4)
    train(cfg)
    out = Path(cfg.out)
    log = read_log(out / LOG_FILE)
    events = [r for r in log if r.get("event") == "task_stopped"]
    assert events == [{"step": 3, "event": "task_stopped", "task": "relpos", "best_val_loss": 0.9, "best_step": 2}]
    records = {r["step"]: r for r in log if "loss" in r}
    assert all("relpos_loss" in records[s] and "stopped" not in records[s] for s in (1, 2))
    assert "relpos_loss" in records[3] and records[3]["stopped"] == {"relpos": 3}  # it trained at the step it stopped
    for s in (4, 5, 6):  # no longer run: no train loss, metric or rate; the other tasks train on
        assert "relpos_loss" not in records[s] and "relpos_samples_per_s" not in records[s]
        assert records[s]["stopped"] == {"relpos": 3} and math.isfinite(records[s]["color_loss"])
    at_stop, at_end = out / "ckpt-00000003.pt", out / "ckpt-00000006.pt"
    assert "lasso.alpha.relpos" in relpos_head(at_stop) and same(relpos_head(at_stop), relpos_head(at_end))
    assert not torch.equal(*(load_checkpoint(p)["model"]["lasso.alpha.color"] for p in (at_stop, at_end)))
    assert not same(trunk(at_stop), trunk(at_end))
    summary = capsys.readouterr().out
    assert "relpos stops training at step 3" in summary
    assert any(line.strip().startswith("relpos") and "stopped at step 3" in line for line in summary.splitlines())

    monkeypatch.setattr(loop, "validate", scripted_validation([0.5]))  # would be a new best: it stays stopped
    train(replace(cfg, steps=9), resume=True)
    later = [r for r in read_log(out / LOG_FILE) if r.get("step", 0) > 6 and "loss" in r]
    assert [r["step"] for r in later] == [7, 8, 9] and all("relpos_loss" not in r for r in later)
    assert same(relpos_head(at_stop), relpos_head(out / "ckpt-00000009.pt"))


def test_the_pictures_draw_a_log_in_which_a_task_stopped(tmp_path):
    from mtssl.report import figures
    from mtssl.train.plots import plot_curves

    records = [
        {"step": s, "loss": 3.0 - 0.1 * s, "lr": 1e-3, "color_loss": 2.0, "color_acc": 0.1}
        | ({"relpos_loss": 2.0, "relpos_acc": 0.2} if s <= 3 else {"stopped": {"relpos": 3}})
        | {"val_relpos_loss": 1.9 + 0.1 * s, "val_relpos_acc": 0.2}
        for s in range(1, 7)
    ]
    records.insert(3, {"step": 3, "event": "task_stopped", "task": "relpos", "best_val_loss": 2.0, "best_step": 1})
    assert figures.early_stops(records) == {"relpos": 3}
    png = b"\x89PNG\r\n\x1a\n"
    assert figures.curves(records, tmp_path / "report.png", "run").read_bytes().startswith(png)
    train_records = [r for r in records if "loss" in r]
    assert plot_curves(train_records, tmp_path / "curves.png").read_bytes().startswith(png)


def test_a_diverged_validation_counts_as_above_the_bar_and_never_becomes_the_best():
    stopper = EarlyStop(TASKS, patience=2, margin=0.2)
    assert feed(stopper, {"relpos": [float("nan"), 1.0, float("nan"), float("inf")]}) == {400: ["relpos"]}
    assert stopper.watches["relpos"].best == 1.0 and stopper.watches["relpos"].best_step == 200


def test_a_window_averages_each_key_over_the_steps_that_reported_it():
    from mtssl.train.logging import Window

    window = Window()
    for step in range(4):
        metrics = {"color_loss": torch.tensor(1.0)} | ({"relpos_loss": torch.tensor(2.0)} if step < 1 else {})
        window.add(torch.tensor(3.0), metrics, 0.0)
    means = window.means()
    assert means["relpos_loss"] == 2.0 and means["color_loss"] == 1.0 and means["loss"] == 3.0
