"""The held-out validation split: which shards ``ShardSet.split`` holds out, the ``val_*`` log keys of a run,
deterministic scores, and the summary a run prints at its end."""

from __future__ import annotations

import math
import re
from dataclasses import replace
from pathlib import Path

import pytest
import torch

import mtssl.train.setup as setup
from mtssl.data.shardsets import ShardSet, open_sets
from mtssl.tasks import TASKS
from mtssl.tasks import TASKS as TASK_CLASSES
from mtssl.train.checkpoint import load_checkpoint
from mtssl.train.logging import LOG_FILE, read_log
from mtssl.train.loop import build_network, train, validate, validation_batches

from ..shardkit import build_sets

METRICS = {task: TASK_CLASSES[task].metric_name for task in TASKS}


def shard_set(*sizes: int) -> ShardSet:
    shardlist = [{"url": f"s-{i}.tar", "nsamples": n} for i, n in enumerate(sizes)]
    return ShardSet("relpos", Path("/sets/relpos"), {"shardlist": shardlist}, "hash")


def names(urls: list[str]) -> list[int]:
    return [int(Path(url).stem.split("-")[1]) for url in urls]


@pytest.mark.parametrize(
    ("sizes", "val_shards", "train", "held"),
    [
        ((4, 4, 4), 1, [0, 1], [2]),  # the last shard
        ((4, 4), 1, [0, 1], []),  # one would be left for training: none held out
        ((4,), 1, [0], []),
        ((4, 4, 4, 4), 2, [0, 1], [2, 3]),
        ((4, 4, 4, 4), 3, [0, 1, 2, 3], []),  # would leave one
        ((4, 4, 4), 0, [0, 1, 2], []),
        ((4, 4, 4, 1), 1, [0, 1, 3], [2]),  # the build's small remainder shard is not a validation shard
        ((4, 4, 4, 2), 1, [0, 1, 2], [3]),  # half the largest counts as full
        ((4, 0, 4, 4), 1, [0, 2], [3]),  # empty shards are left out of both
        ((4, 0, 4), 1, [0, 2], []),
    ],
)
def test_split_holds_out_the_last_full_shards_and_leaves_two_for_training(sizes, val_shards, train, held):
    got_train, got_held = shard_set(*sizes).split(val_shards)
    assert (names(got_train), names(got_held)) == (train, held)
    assert all(url.startswith("/sets/relpos/") for url in got_train + got_held)


@pytest.fixture(scope="module")
def split_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fixture's sets with the image sets rebuilt at 2 samples per shard (4 shards each); motion keeps its
    3 shards (one per video, 6-7 samples each)."""
    import pipelines.build

    build = pipelines.build.build

    def two_per_shard(*args, **kwargs):
        return build(*args, **{**kwargs, "samples_per_shard": 2})

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pipelines.build, "build", two_per_shard)
        return build_sets(tmp_path_factory.mktemp("split-data"))


def val_keys(task: str) -> set[str]:
    return {f"val_{task}_loss", f"val_{METRICS[task]}"}


def test_a_run_logs_validation_of_every_task_and_never_trains_on_it(split_root, tiny_config, monkeypatch, capsys):
    specs = []

    class RecordingStream(setup.StepStream):
        def __init__(self, task_specs, *args, **kwargs):
            specs.extend(task_specs)
            super().__init__(task_specs, *args, **kwargs)

    monkeypatch.setattr(setup, "StepStream", RecordingStream)
    cfg = tiny_config(shards=str(split_root), steps=5, val_every=3, log_every=2, save_every=5, batch_size=2)
    cfg = replace(cfg, val_shards=1, val_batches=2)
    train(cfg)
    log = read_log(Path(cfg.out) / LOG_FILE)
    assert [(r["step"], r.get("event")) for r in log] == [(2, None), (3, "val"), (4, None), (5, None), (5, "end")]
    every = set().union(*(val_keys(task) for task in TASKS))
    assert set(log[1]) == {"step", "event", *every}  # a validation-only record between two log records
    assert not every & set(log[0]) and not every & set(log[2])
    assert every <= set(log[3]) and "loss" in log[3]  # and at the last step (not a multiple of 3): in its record
    assert all(math.isfinite(log[i][key]) for i in (1, 3) for key in every)
    assert all(0 <= log[3][f"val_{METRICS[task]}"] <= 1 for task in TASKS)

    sets = open_sets(split_root, TASKS)
    for spec in specs:  # the training streams never read a held-out shard
        train_urls, held = sets[spec.task].split(1)
        assert held and set(spec.urls) == set(train_urls) and not set(spec.urls) & set(held)

    # the last record's scores are those of the final weights, recomputed from the checkpoint
    cfg = replace(cfg, tasks=tuple(sets))
    net = build_network(cfg, sets)
    net.load_state_dict(load_checkpoint(Path(cfg.out) / "ckpt-00000005.pt")["model"])
    splits = {task: sset.split(cfg.val_shards) for task, sset in sets.items()}
    scores = validate(net, validation_batches(cfg, sets, net, splits), cfg.seed, torch.device("cpu"))
    assert scores == {key: log[3][key] for key in every}

    out = capsys.readouterr().out
    summary = out[out.index("done: 5 steps in") :]
    assert re.search(rf"done: 5 steps in {re.escape(cfg.out)}, wall time \d+s\n", summary)
    end = log[-1]
    assert end["event"] == "end" and end["wall_s"] > 0
    for task in TASKS:
        line = next(line for line in summary.splitlines() if line.strip().startswith(task))
        assert f"loss {log[3][f'{task}_loss']:.4f}" in line
        assert f"validation loss {log[3][f'val_{task}_loss']:.4f}, {METRICS[task]}" in line
    for path in ("ckpt-*.pt", "trunk.pt", LOG_FILE, "curves.png", "lasso.png"):
        assert f"{cfg.out}/{path}" in summary, path
    assert "mtssl-eval probe --run" in summary


def test_only_sets_with_a_split_are_validated(shard_root, tiny_config, capsys):
    """The shared fixture: the image sets have 2 shards (no split), motion has 3 (one held out)."""
    sets = open_sets(shard_root, TASKS)
    assert {task: len(sset.split(1)[1]) for task, sset in sets.items()} == {
        "relpos": 0,
        "color": 0,
        "exemplar": 0,
        "motion": 1,
        "rotation": 0,
        "jigsaw": 0,
    }
    cfg = tiny_config(steps=2, save_every=2, log_every=2, val_every=1)
    result = train(cfg)
    log = read_log(Path(cfg.out) / LOG_FILE)
    assert set(log[0]) >= {"event", *val_keys("motion")} and log[0]["event"] == "val" and log[0]["step"] == 1
    assert {key for key in log[1] if key.startswith("val_")} == val_keys("motion")
    assert val_keys("motion") <= set(result)
    summary = capsys.readouterr().out
    lines = {line.split()[0]: line for line in summary.splitlines() if line.startswith("  ") and line.split()}
    assert "validation loss" in lines["motion"] and "validation" not in lines["relpos"]


def test_validate_is_deterministic_and_leaves_the_network_as_it_was(split_root, tiny_config):
    cfg = tiny_config(shards=str(split_root), batch_size=2, val_shards=1, val_batches=2)
    sets = open_sets(split_root, TASKS)
    cfg = replace(cfg, tasks=tuple(sets))
    torch.manual_seed(0)
    net = build_network(cfg, sets)
    splits = {task: sset.split(cfg.val_shards) for task, sset in sets.items()}
    val = validation_batches(cfg, sets, net, splits)
    counts = {task: len(batches) for task, batches in val.items()}
    assert counts == {"relpos": 1, "color": 1, "exemplar": 1, "motion": 2, "rotation": 1, "jigsaw": 1}  # 2; motion 7
    before = {key: value.clone() for key, value in net.state_dict().items()}
    first = validate(net, val, cfg.seed, torch.device("cpu"))
    torch.rand(100)  # the global RNG is not what makes them equal
    second = validate(net, val, cfg.seed, torch.device("cpu"))
    assert first == second and set(first) == set().union(*(val_keys(task) for task in TASKS))
    assert net.training  # back in train mode
    after = net.state_dict()
    assert all(torch.equal(before[key], after[key]) for key in before)  # eval mode: BN statistics untouched
    # and they are scores of these weights: other weights, other scores
    with torch.no_grad():
        net.trunk.conv1.weight.mul_(1.5)
    assert validate(net, val, cfg.seed, torch.device("cpu")) != first
    assert validate(net, {}, cfg.seed, torch.device("cpu")) == {}
    none = validation_batches(replace(cfg, val_batches=0), sets, net, splits)
    assert none == {}


def test_held_out_shards_smaller_than_a_batch_still_validate_weighted_by_samples(split_root, tiny_config):
    """The image sets hold out one shard of 2 samples: at batch 4 they validate on one partial batch of 2
    (before, no batch and silently no validation); motion's 7 held-out samples are a batch of 4 and one of 3,
    and its scores are the sample-weighted mean of the two batches'."""
    cfg = tiny_config(shards=str(split_root), batch_size=4, val_shards=1, val_batches=4)
    sets = open_sets(split_root, TASKS)
    cfg = replace(cfg, tasks=tuple(sets))
    torch.manual_seed(0)
    net = build_network(cfg, sets)
    val = validation_batches(cfg, sets, net, {task: sset.split(cfg.val_shards) for task, sset in sets.items()})
    sizes = {task: [len(next(iter(batch.values()))) for batch in batches] for task, batches in val.items()}
    assert sizes == {"relpos": [2], "color": [2], "exemplar": [2], "motion": [4, 3], "rotation": [2], "jigsaw": [2]}
    cpu = torch.device("cpu")
    scores = validate(net, val, cfg.seed, cpu)  # every task's head takes its partial batch
    assert set(scores) == set().union(*(val_keys(task) for task in TASKS)) and all(map(math.isfinite, scores.values()))
    both = validate(net, {"motion": val["motion"]}, cfg.seed, cpu)
    alone = [validate(net, {"motion": [batch]}, cfg.seed, cpu) for batch in val["motion"]]
    for key, value in both.items():
        assert value == pytest.approx((4 * alone[0][key] + 3 * alone[1][key]) / 7, abs=2e-6)


def test_a_task_left_without_validation_batches_says_so(split_root, tiny_config, monkeypatch, capsys):
    monkeypatch.setattr(setup, "fixed_batches", lambda spec, count: [])
    cfg = tiny_config(shards=str(split_root), val_shards=1)
    sets = {"relpos": open_sets(split_root, TASKS)["relpos"]}
    net = build_network(replace(cfg, tasks=("relpos",)), sets)
    assert validation_batches(cfg, sets, net, {"relpos": sets["relpos"].split(1)}) == {}
    assert "note: the relpos shard(s) held out for validation hold fewer than 2" in capsys.readouterr().err
