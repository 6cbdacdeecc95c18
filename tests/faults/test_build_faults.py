"""Fault injection on builds: what a rerun over damaged output does, and what an empty build reports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mtssl.contract import MANIFEST_FILE
from mtssl.tasks import TASKS
from pipelines.build import build as build_set
from pipelines.recipes import RECIPES


def build(images: Path, out: Path, **options):
    config = RECIPES["color"].config_type()
    return build_set("color", images, out, config, workers=0, samples_per_shard=8, show_progress=False, **options)


def test_a_rerun_rebuilds_a_truncated_shard_instead_of_reporting_it_done(sample_images, tmp_path):
    out = tmp_path / "color"
    build(sample_images, out)
    shard = sorted(out.glob("*.tar"))[2]
    whole = shard.read_bytes()
    shard.write_bytes(whole[: len(whole) // 2])
    report = build(sample_images, out)
    assert report.built == 1 and shard.read_bytes() == whole
    entry = next(e for e in json.loads((out / MANIFEST_FILE).read_text())["shardlist"] if e["url"] == shard.name)
    assert entry["filesize"] == len(whole)


def test_a_build_that_writes_no_sample_fails_with_the_reject_summary(tmp_path):
    from typer.testing import CliRunner

    from pipelines.cli import app

    images = tmp_path / "images" / "class"
    images.mkdir(parents=True)
    (images / "empty.jpg").write_bytes(b"")
    (images / "junk.jpg").write_bytes(b"not a jpeg at all")
    args = ["build", "color", "--images", str(tmp_path / "images"), "--out", str(tmp_path / "o"), "--workers", "0"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code != 0, result.output
    assert "no sample" in result.output and "empty file" in result.output and "2 inputs rejected" in result.output


def test_an_edited_input_refuses_the_rerun_and_says_what_changed(sample_images, tmp_path):
    import shutil

    from pipelines.plan import PlanMismatch

    images = tmp_path / "images"
    shutil.copytree(sample_images, images)
    out = tmp_path / "color"
    build(images, out)
    files = sorted(p for p in images.rglob("*.jpg"))
    files[0].write_bytes(files[1].read_bytes() + b"\0")  # replaced by another photo
    files[2].write_bytes(b"")  # emptied
    with pytest.raises(PlanMismatch, match=r"inputs changed .*2 changed: .*--overwrite") as info:
        build(images, out)
    assert files[0].relative_to(images).as_posix() in str(info.value)
    manifest = build(images, out, overwrite=True).manifest
    assert manifest["rejects"] == {"empty file": 1}


def test_a_build_removes_only_the_temporary_files_of_dead_processes_of_its_host(sample_images, tmp_path):
    import os
    import subprocess

    from mtssl.contract import HOST

    out = tmp_path / "color"
    out.mkdir()
    dead = subprocess.Popen(["true"])
    dead.wait()  # a pid that no longer runs
    stale = out / f".color-000000.tar.{HOST}.{dead.pid}.tmp"
    live = out / f".color-000001.tar.{HOST}.{os.getppid()}.tmp"  # a second, live build writing here
    elsewhere = out / f".color-000002.tar.other-host.{dead.pid}.tmp"  # a Ray worker on another node
    for path in (stale, live, elsewhere):
        path.write_bytes(b"half a shard")
    build(sample_images, out)
    assert not stale.exists() and live.exists() and elsewhere.exists()


def test_a_removed_manifest_gets_the_advice_to_rerun_the_same_build(sample_images, tmp_path):
    from mtssl.data.shardsets import ShardSetError, open_sets

    build(sample_images, tmp_path / "color")
    (tmp_path / "color" / MANIFEST_FILE).unlink()
    for shards in (tmp_path, tmp_path / "color"):  # the parent folder, or the set's own folder
        with pytest.raises(ShardSetError, match=r"manifest\.json: the build did not finish.*Rerun the same"):
            open_sets(shards, TASKS, ["color"])
    build(sample_images, tmp_path / "color")  # the rerun writes it again
    assert set(open_sets(tmp_path, TASKS, ["color"])) == {"color"}


def test_verify_fails_a_set_with_no_sample(tmp_path):
    from typer.testing import CliRunner

    from pipelines.cli import app

    images = tmp_path / "images" / "class"
    images.mkdir(parents=True)
    (images / "empty.jpg").write_bytes(b"")
    CliRunner().invoke(
        app, ["build", "color", "--images", str(tmp_path / "images"), "--out", str(tmp_path / "o"), "--workers", "0"]
    )
    result = CliRunner().invoke(app, ["verify", str(tmp_path / "o")])
    assert result.exit_code == 1 and "holds no sample" in " ".join(result.output.split())


def moving_squares(count: int, seed: int) -> list:
    """A textured square moving right over a textured background, 96 x 128."""
    import cv2
    import numpy as np

    rng = np.random.default_rng(seed)
    background = cv2.resize(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8), (128, 96))
    square = cv2.resize(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8), (40, 40), interpolation=cv2.INTER_NEAREST)
    frames = []
    for i in range(count):
        frame = background.copy()
        frame[28:68, 8 + 3 * i : 48 + 3 * i] = square
        frames.append(frame)
    return frames


def test_an_edited_video_refuses_the_rerun_of_a_motion_build_and_says_which(tmp_path):
    """A video replaced by another of the same length (the same segments): caught by its size and time."""
    import os

    from pipelines.motion.clips import write_video
    from pipelines.plan import PlanMismatch
    from pipelines.recipes.motion import MotionRecipeConfig

    videos, out = tmp_path / "videos", tmp_path / "motion"
    for seed in range(2):
        write_video(videos / f"clip{seed}.mp4", moving_squares(12, seed))
    cfg = MotionRecipeConfig(size=96, stride=2, max_frames=None, segment_frames=100, min_source_side=32)
    options = {"workers": 0, "samples_per_shard": 4, "show_progress": False}
    build_set("motion", videos, out, cfg, **options)
    assert build_set("motion", videos, out, cfg, **options).built == 0  # untouched: resumes, nothing to do
    clip = videos / "clip1.mp4"
    write_video(clip, moving_squares(12, seed=7))
    stat = clip.stat()
    os.utime(clip, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # and certainly a later time
    with pytest.raises(PlanMismatch, match=r"inputs changed .*1 changed: clip1.mp4.*--overwrite"):
        build_set("motion", videos, out, cfg, **options)
    assert build_set("motion", videos, out, cfg, overwrite=True, **options).built >= 1


def busy_workers() -> list[int]:
    """PIDs of Ray worker processes running a shard job (Linux: their process titles)."""
    import subprocess

    out = subprocess.run(["pgrep", "-f", "ray::build_shard"], capture_output=True, text=True).stdout
    return [int(pid) for pid in out.split()]


@pytest.mark.ray
def test_a_killed_driver_takes_its_busy_ray_workers_with_it(tmp_path):
    import os
    import shutil
    import signal
    import subprocess
    import sys
    import time

    from pipelines.sample import write_image_sample

    if shutil.which("pgrep") is None:
        pytest.skip("needs pgrep")
    images = tmp_path / "images"
    write_image_sample(images, per_class=16, seed=1)  # 240 inputs, 2 shards of 120 (seconds each)
    out = tmp_path / "out"
    args = [
        "build",
        "color",
        "--images",
        str(images),
        "--out",
        str(out),
        "--workers",
        "2",
        "--samples-per-shard",
        "120",
    ]
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    driver = subprocess.Popen([sys.executable, "-m", "pipelines.cli", *args], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 120
    while not busy_workers():
        assert driver.poll() is None and time.monotonic() < deadline, "the build ended before a worker was busy"
        time.sleep(0.05)
    killed_at = time.time()
    os.kill(driver.pid, signal.SIGKILL)
    driver.wait()
    gone_by = time.monotonic() + 10
    while busy_workers() and time.monotonic() < gone_by:
        time.sleep(0.1)
    assert not busy_workers(), "a worker went on with its shard after its driver died"
    time.sleep(3)
    late = [p.name for p in out.glob("*.tar") if p.stat().st_mtime > killed_at + 1.0]  # the watch's promise
    assert not late, f"a shard was finished for a build nobody waits for: {late}"
    assert len(list(out.glob("*.tar"))) < 2, "both shards were done: nothing was interrupted"
    in_process = [*args[:-3], "0", "--samples-per-shard", "120"]  # the rerun resumes without Ray
    rerun = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", *in_process], env=env, capture_output=True, text=True
    )
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert len(list(out.glob("*.tar"))) == 2 and not list(out.glob(".*.tmp"))


def test_rehash_catches_an_edit_that_keeps_size_and_time(sample_images, tmp_path):
    import os
    import shutil

    from pipelines.plan import PlanMismatch

    images = tmp_path / "images"
    shutil.copytree(sample_images, images)
    plain, hashed = tmp_path / "plain", tmp_path / "hashed"
    build(images, plain)
    build(images, hashed, rehash=True)
    victim = sorted(images.rglob("*.jpg"))[3]
    stat, data = victim.stat(), bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size
    victim.write_bytes(bytes(data))
    os.utime(victim, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same time
    assert build(images, plain).built == 0  # size and time alone cannot tell
    with pytest.raises(PlanMismatch, match=r"1 changed: .*--overwrite"):
        build(images, hashed, rehash=True)
    with pytest.raises(PlanMismatch, match="started with --rehash"):
        build(images, hashed)


@pytest.mark.parametrize("task,source", [("color", "images"), ("motion", "videos")])
def test_an_input_that_vanishes_mid_build_stops_it_in_one_line_and_the_rerun_completes(
    task, source, sample_images, tmp_path, monkeypatch
):
    """A file listed when the build started and gone when its shard reads it: not a silent reject (the set
    would lack an input its fingerprint claims) but one line naming it, exit 1, the finished shards kept; once
    the file is back (moved back: same size and time) the same command completes, as an uninterrupted build."""
    import shutil

    from typer.testing import CliRunner

    import pipelines.build
    from pipelines.cli import app
    from pipelines.motion.synthetic import write_synthetic_videos

    if source == "images":
        root = tmp_path / "images"
        shutil.copytree(sample_images, root)
    else:
        write_synthetic_videos(tmp_path / "sample")
        root = tmp_path / "sample" / "videos"
    inputs = sorted(p for p in root.rglob("*") if p.is_file())
    victim, aside = inputs[len(inputs) // 2], tmp_path / "aside"
    real_prepare = pipelines.build.prepare_out_dir

    def prepare_then_lose_one(plan, overwrite):  # the input goes after the listing, before its shard reads it
        real_prepare(plan, overwrite)
        victim.rename(aside)

    monkeypatch.setattr(pipelines.build, "prepare_out_dir", prepare_then_lose_one)
    args = ["build", task, f"--{source}", str(root), "--workers", "0", "--samples-per-shard", "2"]
    out = tmp_path / "out"
    result = CliRunner().invoke(app, [*args, "--out", str(out)])
    assert result.exit_code == 1, result.output
    message = " ".join(result.output.split())
    assert message.count("error:") == 1 and "vanished during the build" in message
    assert str(victim) in "".join(result.output.split())  # rich may wrap the path
    assert "Restore it and rerun the same command" in message
    assert not (out / MANIFEST_FILE).exists()
    monkeypatch.setattr(pipelines.build, "prepare_out_dir", real_prepare)
    aside.rename(victim)
    rerun = CliRunner().invoke(app, [*args, "--out", str(out)])
    assert rerun.exit_code == 0 and "already done" in rerun.output, rerun.output
    clean = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "clean")])
    assert clean.exit_code == 0
    assert (out / MANIFEST_FILE).read_bytes() == (tmp_path / "clean" / MANIFEST_FILE).read_bytes()


def test_a_build_into_an_existing_file_says_so_in_one_line(sample_images, tmp_path):
    from typer.testing import CliRunner

    from pipelines.cli import app

    out = tmp_path / "notes.txt"
    out.write_text("mine\n")
    result = CliRunner().invoke(app, ["build", "color", "--images", str(sample_images), "--out", str(out)])
    assert result.exit_code == 2  # a usage error, as the CLI's other option mistakes
    assert " ".join(result.output.split()) == f"error: {out} is a file, not a folder: choose a folder for the set"
    assert out.read_text() == "mine\n"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("workers", "sig", "code", "name"), [("0", "SIGINT", 130, "SIGINT"), ("2", "SIGTERM", 143, "SIGTERM")]
)
def test_a_signal_ends_a_build_in_one_line_and_the_same_command_resumes(tmp_path, workers, sig, code, name):
    """Ctrl-C or a scheduler's SIGTERM (which Ray's own handler would turn into a silent exit 15): one line
    saying what is kept, exit 130 / 143, the lock released, and the same command completes the set."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from pipelines.motion.synthetic import write_synthetic_videos
    from tests.conftest import default_sigint

    write_synthetic_videos(tmp_path, seed=0)  # 8 videos: a motion build of a few seconds per worker
    out = tmp_path / "out"
    args = ["-m", "pipelines.cli", "build", "motion", "--videos", str(tmp_path / "videos"), "--out", str(out)]
    args += ["--workers", workers, "--samples-per-shard", "5"]
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    build = subprocess.Popen(
        [sys.executable, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=default_sigint,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not list(out.glob("motion-*.tar")):
        assert build.poll() is None and time.monotonic() < deadline, "the build ended before a shard was done"
        time.sleep(0.05)
    build.send_signal(getattr(signal, sig))
    _, err = build.communicate(timeout=120)
    assert build.returncode == code, err
    lines = [line for line in err.splitlines() if line.startswith("interrupted")]
    assert len(lines) == 1 and lines[0].startswith(f"interrupted ({name}): ") and "rerun the same command" in lines[0]
    assert "Traceback" not in err and not (out / ".mtssl.lock").exists() and not (out / MANIFEST_FILE).exists()
    again = subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert json.loads((out / MANIFEST_FILE).read_text())["totals"]["shards"] >= 1
