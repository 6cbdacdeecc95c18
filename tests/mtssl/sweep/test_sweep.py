"""``mtssl-sweep`` end to end on 2 local Ray CPUs: tiny runs trained and probed in parallel, one comparison,
a rerun that does nothing, a failed run that does not stop the others, and a killed driver whose rerun
resumes the interrupted run from its checkpoint."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from mtssl.sweep.plan import ended

from ..eval.test_probe import write_folder
from ..shardkit import TINY_TASK_OPTIONS

pytestmark = [pytest.mark.ray, pytest.mark.slow]

TINY = {
    "depth": 18,
    "width": 8,
    "batch_size": 2,
    "workers": 0,
    "warmup_steps": 0,
    "log_every": 1,
    "save_every": 2,
    "device": "cpu",
    "augment": False,
    "steps": 4,
}


def write_spec(tmp_path: Path, shard_root: Path, runs: dict, **extra) -> Path:
    photos = tmp_path / "photos"
    if not photos.is_dir():
        write_folder(photos)
        (photos / "sky" / "bad.jpg").unlink()
    spec = {
        "shards": str(shard_root),
        "common": {**TINY, "task_options": {t: TINY_TASK_OPTIONS[t] for t in ("relpos", "motion")}},
        "runs": runs,
        "seeds": [0],
        "probe": {
            "shapes": {"images": str(photos), "size": 32, "random_seeds": 1, "cache_dir": str(tmp_path / "cache")}
        },
        **extra,
    }
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(json.loads(json.dumps(spec)), sort_keys=False))
    return path


def sweep(*args: str, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "RAY_ADDRESS": "", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "mtssl.sweep.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=500, **kwargs)


def test_a_sweep_trains_probes_and_compares_in_parallel_and_a_rerun_does_nothing(shard_root: Path, tmp_path: Path):
    runs = {"relpos-alone": {"tasks": "relpos"}, "both-naive": {"tasks": "relpos,motion", "lasso": False}}
    spec, out = write_spec(tmp_path, shard_root, runs), tmp_path / "sweep"
    first = sweep(str(spec), "--out", str(out), "--parallel", "2", "--json")
    assert first.returncode == 0, first.stderr[-3000:]
    assert "ray: 2 at once, 1 CPU and 0 GPU each" in first.stderr
    table = json.loads(first.stdout)
    assert [row["run"] for row in table["rows"]] == ["relpos-alone", "both-naive"]
    for row in table["rows"]:
        assert row["done"] == [0] and row["probes"]["shapes"]["n"] == 1 and row["train_s"] > 0
    for name in ("relpos-alone-s0", "both-naive-s0"):
        run = out / "runs" / name
        assert (run / "trunk.pt").is_file() and (run / "probe-shapes.json").is_file()
        assert json.loads((run / "config.json").read_text())["seed"] == 0
        assert json.loads((run / "probe-shapes.json").read_text())["dataset"] == "shapes"
    assert json.loads((out / "runs" / "both-naive-s0" / "config.json").read_text())["lasso"] is False
    record = json.loads((out / "sweep.json").read_text())
    assert {e["status"] for e in record["items"].values()} == {"ok"}
    assert "Sweep: each run over its seeds" in (out / "report" / "index.html").read_text()
    assert "| relpos-alone |" in (out / "table.md").read_text()

    stamp = (out / "runs" / "relpos-alone-s0" / "trunk.pt").stat().st_mtime_ns
    again = sweep(str(spec), "--out", str(out))
    assert again.returncode == 0, again.stderr[-3000:]
    assert "2 runs, 2 done, 0 to run" in again.stderr and "ray:" not in again.stderr
    assert (out / "runs" / "relpos-alone-s0" / "trunk.pt").stat().st_mtime_ns == stamp
    assert "| relpos-alone |" in again.stdout

    changed = write_spec(tmp_path, shard_root, {**runs, "relpos-alone": {"tasks": "relpos", "lr": 0.5}})
    refused = sweep(str(changed), "--out", str(out))
    assert refused.returncode == 2
    folder = out / "runs" / "relpos-alone-s0"
    words = f"error: {folder} was trained with other options than the spec's: lr 0.001 (spec: 0.5)"
    assert refused.stderr.strip().splitlines()[-1].startswith(words)


def test_a_failed_run_is_reported_and_the_others_finish(shard_root: Path, tmp_path: Path):
    runs = {"good": {"tasks": "relpos"}, "bad": {"tasks": "relpos", "task_options": {"relpos": {"patch_size": 40}}}}
    spec, out = write_spec(tmp_path, shard_root, runs), tmp_path / "sweep"
    result = sweep(str(spec), "--out", str(out), "--parallel", "2")
    assert result.returncode == 1
    assert "FAILED   bad-s0" in result.stderr and "mtssl-train: error:" in result.stderr
    assert (out / "runs" / "good-s0" / "probe-shapes.json").is_file()
    record = json.loads((out / "sweep.json").read_text())["items"]
    assert record["good-s0"]["status"] == "ok" and record["bad-s0"]["status"] == "failed"
    assert "patch" in record["bad-s0"]["error"]


def test_a_killed_driver_leaves_no_training_behind_and_the_rerun_resumes(shard_root: Path, tmp_path: Path):
    runs = {"long": {"tasks": "relpos", "steps": 60, "save_every": 5}}
    spec, out = write_spec(tmp_path, shard_root, runs), tmp_path / "sweep"
    env = {**os.environ, "RAY_ADDRESS": "", "OMP_NUM_THREADS": "1"}
    driver = subprocess.Popen([sys.executable, "-m", "mtssl.sweep.cli", str(spec), "--out", str(out)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    run = out / "runs" / "long-s0"
    deadline = time.time() + 240
    while not list(run.glob("ckpt-*.pt")) and time.time() < deadline:
        time.sleep(0.05)
    assert list(run.glob("ckpt-*.pt")), "no checkpoint within 4 minutes"
    trainer = json.loads((run / ".mtssl.lock").read_text())["pid"]  # the training process holds the run's lock
    os.kill(trainer, signal.SIGSTOP)  # paused between checkpoints, so the kill lands mid-run however fast it steps
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    os.kill(trainer, signal.SIGCONT)  # it now finds the SIGTERM its parent's death sent it
    deadline = time.time() + 120
    while time.time() < deadline and lock_held(run):
        time.sleep(0.2)
    assert not lock_held(run), "a training process outlived the killed sweep"
    kept = max(int(p.stem.split("-")[1]) for p in run.glob("ckpt-*.pt"))
    assert 0 < kept < 60 and not ended(run / "log.jsonl", 60)
    again = sweep(str(spec), "--out", str(out))
    assert again.returncode == 0, again.stderr[-3000:]
    assert "started  long-s0 (resuming" in again.stderr
    log = (out / "logs" / "long-s0.log").read_text()
    assert "--resume" in log and f"resuming {run}" in log
    assert ended(run / "log.jsonl", 60)


def lock_held(run: Path) -> bool:
    """Whether a live process holds the run folder's lock (``mtssl.contract.locks``)."""
    from mtssl.contract.locks import LockHeld, hold

    try:
        with hold(run, "check"):
            return False
    except LockHeld:
        return True


def test_sigterm_to_the_sweep_is_one_line_and_the_running_run_keeps_its_checkpoints(shard_root: Path, tmp_path: Path):
    runs = {"long": {"tasks": "relpos", "steps": 60, "save_every": 5}}
    spec, out = write_spec(tmp_path, shard_root, runs), tmp_path / "sweep"
    env = {**os.environ, "RAY_ADDRESS": "", "OMP_NUM_THREADS": "1"}
    driver = subprocess.Popen([sys.executable, "-m", "mtssl.sweep.cli", str(spec), "--out", str(out)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    run = out / "runs" / "long-s0"
    deadline = time.time() + 240
    while not list(run.glob("ckpt-*.pt")) and time.time() < deadline:
        time.sleep(0.05)
    trainer = json.loads((run / ".mtssl.lock").read_text())["pid"]
    os.kill(trainer, signal.SIGSTOP)  # mid-run, however fast the tiny run steps
    driver.send_signal(signal.SIGTERM)
    time.sleep(1.0)
    os.kill(trainer, signal.SIGCONT)
    _, err = driver.communicate(timeout=300)
    assert driver.returncode == 143, err[-2000:]
    lines = [line for line in err.splitlines() if line.startswith("interrupted")]
    assert lines == [
        f"interrupted (SIGTERM): finished runs and probes in {out} are kept; rerun the same command to go on"
    ]
    deadline = time.time() + 120  # the run's process ends on the SIGTERM its worker's end sent it
    while time.time() < deadline and lock_held(run):
        time.sleep(0.2)
    assert not lock_held(run) and not ended(run / "log.jsonl", 60) and list(run.glob("ckpt-*.pt"))
    attempt = json.loads((out / "sweep.json").read_text())["items"]["long-s0"]  # its training time is kept
    assert attempt["status"] == "interrupted" and attempt["train_s"] > 0 and attempt["attempts"] == 1
