"""Fault injection on training: damaged sets stop the run instead of spinning, every user mistake is one line
before any work, a second writer is refused, signals end a run saying how to resume, and a full disk says so."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mtssl.contract.locks import LockHeld, hold
from mtssl.data.health import DamagedData
from mtssl.model.loading import DamagedWeights, load_network, load_trunk
from mtssl.train.cli import app
from mtssl.train.config import ConfigError
from mtssl.train.logging import LOG_FILE, read_log
from mtssl.train.loop import train
from tests.conftest import default_sigint
from tests.mtssl.shardkit import flip_middle_bytes

TINY = ["--depth", "18", "--width", "8", "--batch-size", "4", "--workers", "0", "--shuffle-buffer", "16"]
TINY += ["--warmup-steps", "0", "--log-every", "1", "--device", "cpu", "--no-progress"]
TINY += [f"--task-opt={t}" for t in ("relpos.patch_channels=8", "relpos.patch_dim=32", "relpos.pair_dims=[32]")]
TINY += ["--task-opt=color.hidden=32", "--task-opt=exemplar.hidden=32", "--task-opt=exemplar.dim=16"]
TINY += ["--task-opt=motion.hidden=16", "--val-shards", "0"]


def damaged_sets(shard_root: Path, tmp_path: Path, task: str, count: int | None) -> Path:
    """A copy of the sets with the first ``count`` shards of ``task`` damaged (None: every shard)."""
    root = tmp_path / "shards"
    shutil.copytree(shard_root, root)
    for shard in sorted((root / task).glob("*.tar"))[:count]:
        flip_middle_bytes(shard)
    return root


def one_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    assert len(lines) == 1, text
    return lines[0]


# ---- damaged sets: a stop in one line, never a spin ------------------------------------------------------


@pytest.mark.timeout(120)
@pytest.mark.parametrize("workers", [0, 1])
@pytest.mark.parametrize("max_bad_fraction", [0.01, 1.0])
def test_a_set_whose_every_shard_is_damaged_stops_the_run_naming_the_set(
    shard_root, tmp_path, tiny_config, workers, max_bad_fraction
):
    """Before: every read gave no sample, resampling drew the next shard forever, no step ever ran."""
    root = damaged_sets(shard_root, tmp_path, "color", None)
    cfg = tiny_config(shards=str(root), steps=3, workers=workers, val_shards=0, max_bad_fraction=max_bad_fraction)
    with warnings.catch_warnings(), pytest.raises(DamagedData) as caught:
        warnings.simplefilter("ignore")  # "md5 differs" per shard (in the worker with --workers 1)
        train(cfg)
    line = one_line(str(caught.value))  # a worker's error comes back wrapped by torch: only its line is kept
    first = "color: every shard of " if max_bad_fraction == 1.0 else "color: 1 of its 2 shards are damaged"
    assert line.startswith(first) and f"mtssl-data verify {root / 'color'}" in line and "rebuild" in line


@pytest.mark.timeout(120)
def test_one_damaged_shard_of_a_few_stops_the_run_at_once_not_after_a_hundred_reads(shard_root, tmp_path, tiny_config):
    """--max-bad-fraction 0.01 of a 2-shard set: one damaged shard is half of it. The rule is judged on distinct
    shards, so it holds at any number of shards (before, it waited for 1/0.01 = 100 reads)."""
    root = damaged_sets(shard_root, tmp_path, "color", 1)
    cfg = tiny_config(shards=str(root), steps=200, save_every=200, val_shards=0, tasks=("color",))
    with pytest.warns(UserWarning), pytest.raises(DamagedData, match=r"color: 1 of its 2 shards are damaged"):
        train(cfg)
    log = Path(cfg.out) / LOG_FILE
    steps = [r["step"] for r in read_log(log) if "loss" in r] if log.exists() else []
    assert not steps or max(steps) < 20


def test_the_cli_says_a_damaged_set_in_one_line(shard_root, tmp_path):
    root = damaged_sets(shard_root, tmp_path, "color", None)
    args = ["--shards", str(root), "--out", str(tmp_path / "run"), "--tasks", "color", "--steps", "3", *TINY]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "shards are damaged" in errors[0] and "Traceback" not in result.output


# ---- every user mistake: one line, before any work -------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--depth", "34"], "--depth must be one of 18, 50, 101, got 34"),
        (["--device", "gpu"], "--device must be auto, cpu, cuda or cuda:N, got 'gpu'"),
        (["--optimizer", "adam"], "--optimizer must be one of rmsprop, sgd, adamw, got 'adam'"),
        (["--decay", "linear"], "--decay must be one of cosine, step, none"),
        (["--task-opt", "relpos.bogus=3"], "--task-opt relpos: no field bogus; relpos's fields: "),
        (["--task-opt", "nope.x=3"], "--task-opt takes TASK.FIELD=VALUE"),
        (["--task-opt", "jigsaw.permutations=1"], "--task-opt jigsaw: jigsaw permutations must be 2 to 9!"),
    ],
)
def test_a_wrong_option_is_one_line_before_any_work(shard_root, tmp_path, args, says):
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["--shards", str(shard_root), "--out", str(out), *args])
    assert result.exit_code == 2, result.output
    assert says in one_line(result.output) and one_line(result.output).startswith("error: ")
    assert not out.exists()


def test_unknown_task_option_fields_are_listed(shard_root, tmp_path):
    result = CliRunner().invoke(app, ["--shards", str(shard_root), "--task-opt", "relpos.bogus=3"])
    assert "patch_dim" in one_line(result.output)


def test_choices_are_shown_as_choices_in_the_help():
    text = CliRunner().invoke(app, ["--help"], terminal_width=200).output
    for choices in ("18|50|101", "rmsprop|sgd|adamw", "cosine|step|none", "harmonized|native"):
        assert choices in text


def test_the_cli_depths_are_the_trunks():
    from mtssl.model.trunk import UNITS

    text = CliRunner().invoke(app, ["--help"], terminal_width=200).output
    assert "|".join(map(str, sorted(UNITS))) in text


def test_device_cuda_without_cuda_is_one_line(shard_root, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    result = CliRunner().invoke(app, ["--shards", str(shard_root), "--out", str(tmp_path / "r"), "--device", "cuda:1"])
    assert result.exit_code == 2 and "torch sees no CUDA device" in one_line(result.output)


def test_out_that_is_a_file_is_one_line(shard_root, tmp_path):
    out = tmp_path / "notes.txt"
    out.write_text("mine\n")
    result = CliRunner().invoke(app, ["--shards", str(shard_root), "--out", str(out), *TINY, "--steps", "2"])
    assert result.exit_code == 2
    assert one_line(result.output) == f"error: --out {out} is a file, not a folder: choose a folder for the run"
    assert out.read_text() == "mine\n"


def test_a_resume_asking_fewer_steps_than_done_refuses_and_appends_nothing(tiny_config):
    cfg = tiny_config(steps=4, save_every=4)
    train(cfg)
    log = Path(cfg.out) / LOG_FILE
    before = log.read_text()
    with pytest.raises(ConfigError, match=r"--resume --steps 2: .* already at step 4; ask for more steps"):
        train(tiny_config(steps=2), resume=True)
    assert log.read_text() == before


def test_a_resume_of_a_finished_run_does_nothing(tiny_config, capsys):
    cfg = tiny_config(steps=3, save_every=3)
    train(cfg)
    log = Path(cfg.out) / LOG_FILE
    before = log.read_text()
    capsys.readouterr()
    train(cfg, resume=True)
    assert "nothing to do" in capsys.readouterr().out and log.read_text() == before


# ---- damaged weights: named in one line by every reader --------------------------------------------------


@pytest.fixture
def finished_run(tiny_config) -> Path:
    cfg = tiny_config(steps=2, save_every=2)
    train(cfg)
    return Path(cfg.out)


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_a_truncated_trunk_is_named_in_one_line(finished_run):
    truncate(finished_run / "trunk.pt")
    with pytest.raises(DamagedWeights) as caught:
        load_trunk(finished_run)
    assert str(finished_run / "trunk.pt") in one_line(str(caught.value)) and "truncated or damaged" in str(caught.value)


def test_a_file_that_is_not_a_trunk_is_named_in_one_line(finished_run):
    import torch

    torch.save({"something": torch.zeros(2)}, finished_run / "trunk.pt")
    with pytest.raises(DamagedWeights, match="is not a trunk export mtssl can load"):
        load_trunk(finished_run)


def test_probe_over_a_truncated_trunk_is_one_line(finished_run, tmp_path):
    from mtssl.eval.cli import app as eval_app

    truncate(finished_run / "trunk.pt")
    images = tmp_path / "labelled"
    for name in ("a", "b"):
        (images / name).mkdir(parents=True)
    result = CliRunner().invoke(eval_app, ["probe", "--run", str(finished_run), "--images", str(images)])
    assert result.exit_code == 2 and "truncated or damaged" in one_line(result.output)


def test_a_damaged_checkpoint_file_is_named_in_one_line(finished_run):
    path = next(finished_run.glob("ckpt-*.pt"))
    truncate(path)
    with pytest.raises(DamagedWeights, match=str(path)):
        load_network(path)
    with pytest.raises(DamagedWeights, match="checkpoints in .* are damaged"):
        load_network(finished_run)


# ---- one writer per run folder ---------------------------------------------------------------------------


def test_a_second_run_into_a_held_folder_is_refused_naming_the_holder(tiny_config):
    cfg = tiny_config(steps=2)
    with hold(cfg.out, what="training run"), pytest.raises(LockHeld) as caught:
        train(cfg)
    line = one_line(str(caught.value))
    assert f"pid {os.getpid()}" in line and "training run" in line and "use another --out" in line
    assert not list(Path(cfg.out).glob("ckpt-*.pt")) and not (Path(cfg.out) / LOG_FILE).exists()


def test_a_run_releases_its_folder_and_a_refused_one_leaves_no_folder(tiny_config, tmp_path):
    cfg = tiny_config(steps=2, save_every=2)
    train(cfg)
    assert not (Path(cfg.out) / ".mtssl.lock").exists()
    refused = tiny_config(out=str(tmp_path / "new"), shards=str(tmp_path / "no-shards"))
    with pytest.raises(Exception, match="no-shards"):
        train(refused)
    assert not Path(refused.out).exists()


# ---- signals and full disks (processes) ------------------------------------------------------------------


def start_cli(shard_root: Path, out: Path, steps: int, save_every: int) -> subprocess.Popen:
    args = ["--shards", str(shard_root), "--out", str(out), "--steps", str(steps), "--save-every", str(save_every)]
    code = "import sys; from mtssl.train.cli import app; sys.exit(app())"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-c", code, *args, *TINY],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, preexec_fn=default_sigint,
    )  # fmt: skip


def wait_for(condition, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


@pytest.mark.slow
@pytest.mark.parametrize(("sig", "code", "name"), [(signal.SIGINT, 130, "SIGINT"), (signal.SIGTERM, 143, "SIGTERM")])
def test_a_signal_ends_training_in_one_line_saying_how_to_resume(shard_root, tmp_path, sig, code, name):
    out = tmp_path / "run"
    proc = start_cli(shard_root, out, steps=100_000, save_every=2)
    wait_for(lambda: (out / "ckpt-00000002.pt").exists() or proc.poll() is not None)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    line = one_line(err)
    assert line.startswith(f"interrupted ({name}) at step ") and "of 100000" in line
    assert f"resume with: mtssl-train --out {out} --resume" in line and "kept " in line
    assert not (out / ".mtssl.lock").exists()
    resumed = CliRunner().invoke(app, ["--out", str(out), "--resume", "--steps", "6", "--no-progress"])
    assert resumed.exit_code == 0, resumed.output


@pytest.mark.slow
def test_two_runs_into_one_folder_at_once_the_second_is_refused(shard_root, tmp_path):
    out = tmp_path / "run"
    first = start_cli(shard_root, out, steps=100_000, save_every=1000)
    try:
        wait_for(lambda: (out / ".mtssl.lock").exists() and (out / "config.json").exists())
        second = start_cli(shard_root, out, steps=4, save_every=2)
        _, err = second.communicate(timeout=120)
        assert second.returncode == 1
        line = one_line(err)
        assert line.startswith(f"error: {out} is in use by pid {first.pid}") and "training run" in line
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=60)
    records = read_log(out / LOG_FILE)
    steps = [r["step"] for r in records if "loss" in r]
    assert steps == sorted(set(steps)), "two runs interleaved their steps"


def test_a_full_disk_at_a_checkpoint_says_no_space_left_with_the_path(tiny_config, tiny_disk):
    """A real full disk, not a patched writer: the tiny run's checkpoint (~1.5 MB) does not fit in 1 MiB."""
    from mtssl.train.errors import SaveError

    cfg = tiny_config(out=str(tiny_disk / "run"), steps=2, save_every=2)
    with pytest.raises(SaveError) as caught:
        train(cfg)
    line = one_line(str(caught.value))
    assert "no space left on device" in line and str(tiny_disk / "run" / "ckpt-00000002.pt") in line
    assert not [p for p in (tiny_disk / "run").iterdir() if p.name.endswith(".tmp")]


@pytest.mark.timeout(60)
def test_a_fifo_in_place_of_a_shard_is_named_by_verify_and_training_never_hangs(shard_root, tmp_path, tiny_config):
    from pipelines.cli import app as data_app

    root = tmp_path / "shards"
    shutil.copytree(shard_root, root)
    shard = sorted((root / "color").glob("*.tar"))[0]
    shard.unlink()
    os.mkfifo(shard)
    result = CliRunner().invoke(data_app, ["verify", str(root / "color")])
    assert result.exit_code == 1 and "is not a regular file" in " ".join(result.output.split())
    with pytest.raises(Exception, match=shard.name):
        train(tiny_config(shards=str(root), steps=2, val_shards=0))


def test_probe_refuses_a_device_torch_cannot_make_before_any_work(tmp_path):
    from mtssl.eval.cli import app as eval_app

    result = CliRunner().invoke(
        eval_app, ["probe", "--run", str(tmp_path), "--images", str(tmp_path), "--device", "gpu"]
    )
    assert result.exit_code == 2
    assert one_line(result.output) == "error: --device must be auto, cpu, cuda or cuda:N, got 'gpu'"
