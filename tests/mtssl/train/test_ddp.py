"""Two gloo ranks under torchrun on the CPU: parameters stay identical, in both ways of spreading the tasks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mtssl.train.logging import LOG_FILE, read_log

from ..shardkit import TINY_TASK_OPTIONS

pytestmark = pytest.mark.slow  # starts processes

PORT_RACE = "address already in use"  # another process took torchrun's free port before it bound it


def torchrun(
    shard_root: Path, out: Path, *extra: str, target: tuple[str, ...] = ("--module", "mtssl.train.cli")
) -> list[dict]:
    task_opts = [
        f"--task-opt={task}.{k}={list(v) if isinstance(v, tuple) else v}".replace(" ", "")
        for task, options in TINY_TASK_OPTIONS.items()
        for k, v in options.items()
    ]
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        *target,
        "--shards",
        str(shard_root),
        "--out",
        str(out),
        "--device",
        "cpu",
        "--depth",
        "18",
        "--width",
        "8",
        "--batch-size",
        "3",
        "--workers",
        "0",
        "--shuffle-buffer",
        "8",
        "--steps",
        "4",
        "--save-every",
        "4",
        "--warmup-steps",
        "0",
        "--log-every",
        "2",
        "--no-progress",
        *task_opts,
        *extra,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    if result.returncode != 0 and PORT_RACE in result.stderr.lower():  # --standalone picks a port, then binds it
        result = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    return read_log(out / LOG_FILE)


@pytest.mark.parametrize(
    ("mode", "tasks"), [("all-tasks", "relpos,color,exemplar,motion"), ("task-per-rank", "relpos,color")]
)
def test_two_gloo_ranks_end_with_identical_parameters(shard_root, tmp_path, mode, tasks):
    log = torchrun(shard_root, tmp_path / "run", "--distributed", mode, "--tasks", tasks)
    end = log[-1]
    assert end["event"] == "end" and len(end["param_digests"]) == 2
    assert end["param_digests"][0] == end["param_digests"][1] and end["ranks_in_sync"]
    record = log[-2]
    assert record["step"] == 4
    for task in tasks.split(","):
        assert f"{task}_loss" in record  # reduced over ranks: in task-per-rank mode each rank has one
        expected_ranks = 2 if mode == "all-tasks" else 1
        assert record[f"{task}_samples_per_s"] == pytest.approx(3 * expected_ranks / record["step_s"], rel=0.02)
    assert (tmp_path / "run" / "ckpt-00000004.pt").exists()


SCRIPTED = Path(__file__).with_name("scripted_validation.py")


@pytest.mark.parametrize("mode", ["all-tasks", "task-per-rank"])
def test_rank_zero_stops_a_task_for_every_rank(shard_root, tmp_path, mode):
    """Rank 0 validates (scripted: relpos's loss rises from step 2) and stops relpos; the other rank must follow,
    or its relpos gradients would move the relpos head (and leave the ranks out of sync)."""
    from mtssl.train.checkpoint import load_checkpoint

    run = tmp_path / "run"
    extra = ["--distributed", mode, "--tasks", "relpos,color", "--val-every", "1", "--save-every", "2", "--keep", "3"]
    extra += ["--early-stop", "1"]  # the default momentum and weight decay: the head gets no gradient at all
    log = torchrun(shard_root, run, *extra, target=(str(SCRIPTED),))
    assert [r["task"] for r in log if r.get("event") == "task_stopped"] == ["relpos"]
    assert log[-1]["ranks_in_sync"]
    heads = [
        {
            k: v
            for k, v in load_checkpoint(run / f"ckpt-0000000{step}.pt")["model"].items()
            if ".relpos." in k or k == "lasso.alpha.relpos"
        }
        for step in (2, 4)
    ]
    assert heads[0] and all(torch.equal(heads[0][k], heads[1][k]) for k in heads[0])
