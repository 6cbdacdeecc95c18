"""One writer per folder (``mtssl.contract.locks``): a second writer is refused in one line naming the holder,
a lock left by a dead process is taken over, another host's is refused, releasing removes only one's own, and
two real builds with different options into one ``--out`` leave one correct set whose own command reruns."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mtssl.contract import HOST, LOCK_FILE, MANIFEST_FILE, PLAN_FILE, LockHeld, hold
from mtssl.contract import locations as loc

CLI = [sys.executable, "-m", "pipelines.cli"]
HOLD = (  # a writer that holds the folder given until its stdin closes
    "import sys\nfrom mtssl.contract import hold\n"
    "with hold(sys.argv[1], what='test'):\n print('held', flush=True)\n input()"
)


def dead_pid() -> int:
    """The pid of a process of this host that has exited."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def lock_bytes(host: str, pid: int) -> bytes:
    return json.dumps({"host": host, "pid": pid, "started": "2026-01-01T00:00:00+00:00", "command": "old"}).encode()


def refusal(location: str | Path) -> str:
    """The message of a writer refused at ``location``."""
    with pytest.raises(LockHeld) as info, hold(location):
        pass
    return str(info.value)


def one_error_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in output, output
    return lines[0]


def test_a_second_writer_is_refused_in_one_line_naming_the_holder(tmp_path):
    with hold(tmp_path, what="training run") as lock:
        record = json.loads((tmp_path / LOCK_FILE).read_text())
        assert record == lock.record and record["host"] == HOST and record["pid"] == os.getpid()
        message = refusal(tmp_path)
    assert "\n" not in message and message.startswith(f"{tmp_path} is in use by pid {os.getpid()} on host {HOST}")
    assert f"since {record['started']} (training run: " in message and message.endswith("or use another --out")
    assert not (tmp_path / LOCK_FILE).exists()  # released by its holder


def test_a_lock_is_hidden_from_listings_and_verify(sample_images, tmp_path):
    from pipelines.build import build
    from pipelines.inspect import verify_set
    from pipelines.recipes import RECIPES

    out = tmp_path / "color"
    build("color", sample_images, out, RECIPES["color"].config_type(), workers=0, samples_per_shard=8,
          show_progress=False)  # fmt: skip
    (out / LOCK_FILE).write_bytes(lock_bytes("other-host", 1))  # a writer still there
    assert LOCK_FILE not in loc.listing(out)
    report = verify_set(out)
    assert report.ok, report.problems


def test_a_build_into_a_held_out_is_refused_in_one_line_and_writes_nothing(sample_images, tmp_path):
    from pipelines.cli import app

    out = tmp_path / "color"
    args = ["build", "color", "--images", str(sample_images), "--out", str(out), "--workers", "0"]
    with hold(out, what="training run"):
        result = CliRunner().invoke(app, args)
        assert sorted(p.name for p in out.iterdir()) == [LOCK_FILE]  # no plan, no shard
    assert result.exit_code == 1, result.output
    assert f"is in use by pid {os.getpid()} on host {HOST}" in one_error_line(result.output)
    assert CliRunner().invoke(app, args).exit_code == 0  # once it is free


def test_a_lock_of_another_host_is_refused_saying_how_to_remove_it(tmp_path):
    (tmp_path / LOCK_FILE).write_bytes(lock_bytes("other-host", 1234))
    message = refusal(tmp_path)
    assert "in use by pid 1234 on host other-host since " in message
    assert message.endswith(f"if it is gone, delete {tmp_path / LOCK_FILE})")
    assert (tmp_path / LOCK_FILE).read_bytes() == lock_bytes("other-host", 1234)


def test_a_lock_of_this_host_that_no_process_holds_is_taken_over(tmp_path):
    """A live pid (a reused one) but nobody holds the lock's flock: its writer is gone."""
    (tmp_path / LOCK_FILE).write_bytes(lock_bytes(HOST, os.getppid()))
    with hold(tmp_path) as lock:
        assert json.loads((tmp_path / LOCK_FILE).read_text()) == lock.record
    assert not (tmp_path / LOCK_FILE).exists()


def test_a_lock_file_left_empty_long_ago_is_taken_over(tmp_path):
    path = tmp_path / LOCK_FILE
    path.write_bytes(b"")
    os.utime(path, (time.time() - 60, time.time() - 60))
    with hold(tmp_path) as lock:
        assert json.loads(path.read_text())["pid"] == lock.record["pid"]


def test_releasing_removes_only_its_own_lock(tmp_path):
    path = tmp_path / LOCK_FILE
    with hold(tmp_path):
        path.unlink()  # taken over meanwhile by a writer that judged this one gone
        path.write_bytes(lock_bytes(HOST, 1))
    assert path.read_bytes() == lock_bytes(HOST, 1)


@pytest.mark.slow
def test_a_lock_left_by_a_dead_process_is_taken_over(tmp_path):
    (tmp_path / LOCK_FILE).write_bytes(lock_bytes(HOST, dead_pid()))
    with hold(tmp_path) as lock:
        assert json.loads((tmp_path / LOCK_FILE).read_text()) == lock.record


@pytest.mark.slow
def test_a_live_holder_is_refused_and_its_lock_taken_over_once_it_is_killed(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert holder.stdout.readline() == "held\n"
        assert re.search(rf"is in use by pid {holder.pid} on host {HOST} since \S+ \(test: ", refusal(tmp_path))
    finally:
        holder.kill()
        holder.wait()
    assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == holder.pid  # left behind by the kill
    with hold(tmp_path) as lock:
        assert json.loads((tmp_path / LOCK_FILE).read_text()) == lock.record


@pytest.mark.slow
def test_a_forked_child_leaving_the_block_keeps_its_parents_lock(tmp_path):
    with hold(tmp_path) as lock:
        child = os.fork()
        if child == 0:  # the child leaves the block (as a worker that returns would)
            from mtssl.contract.locks import release

            release(lock)
            os._exit(0)
        os.waitpid(child, 0)
        assert json.loads((tmp_path / LOCK_FILE).read_text()) == lock.record
        assert f"in use by pid {os.getpid()}" in refusal(tmp_path)
    assert not (tmp_path / LOCK_FILE).exists()


@pytest.mark.slow
def test_a_lock_in_a_bucket(s3_server):
    """Held: refused, naming the holder; a dead process's: taken over; another host's: refused; released:
    gone, unless it is no longer ours."""
    s3_server.mkdir("mtssl-locks")
    url, key = "s3://mtssl-locks/sets/color", f"mtssl-locks/sets/color/{LOCK_FILE}"
    with hold(url, what="color build"):
        assert re.match(rf"{url} is in use by pid {os.getpid()} on host {HOST} since \S+ \(color build: ", refusal(url))
    s3_server.invalidate_cache()
    assert not s3_server.exists(key)
    s3_server.pipe_file(key, lock_bytes(HOST, dead_pid()))
    with hold(url) as lock:
        assert json.loads(s3_server.cat_file(key)) == lock.record
        s3_server.pipe_file(key, lock_bytes("other-host", 1))  # taken over meanwhile
    assert s3_server.cat_file(key) == lock_bytes("other-host", 1)
    assert refusal(url).endswith(f"on host other-host since 2026-01-01T00:00:00+00:00 (a writer: old); wait for it to "
                                 f"finish, or use another --out (this host cannot check that process: if it is gone, "
                                 f"delete s3://{key})")  # fmt: skip


def build_command(images: Path, out: str, seed: int) -> list[str]:
    return [*CLI, "build", "color", "--images", str(images), "--out", out, "--workers", "0"] + [
        "--samples-per-shard", "2", "--seed", str(seed)
    ]  # fmt: skip


def holder_pid(out: str) -> int | None:
    try:
        record = json.loads(loc.read_bytes(loc.join(out, LOCK_FILE)))
    except (FileNotFoundError, ValueError):
        return None
    return record.get("pid")


def assert_complete_and_rerunnable(out: str, command: list[str], seed: int) -> None:
    from pipelines.inspect import verify_set

    assert json.loads(loc.read_bytes(loc.join(out, PLAN_FILE)))["config"]["seed"] == seed
    report = verify_set(out)
    assert report.ok and report.samples == 45, report.problems
    rerun = subprocess.run(command, capture_output=True, text=True)
    assert rerun.returncode == 0 and "already done" in rerun.stdout, rerun.stdout + rerun.stderr  # the result: stdout


@pytest.mark.slow
@pytest.mark.parametrize("where", ["folder", "bucket"])
def test_a_second_build_with_another_seed_is_refused_while_the_first_runs(where, sample_images, tmp_path, request):
    """The first build is stopped while it holds ``--out``; the second, with another --seed, is refused in one
    line naming it; the first then finishes a set whose own command reruns."""
    if where == "bucket":
        request.getfixturevalue("s3_server").mkdir("mtssl-two-builds")
    out = str(tmp_path / "color") if where == "folder" else "s3://mtssl-two-builds/color"
    first_command = build_command(sample_images, out, seed=1)
    first = subprocess.Popen(first_command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while holder_pid(out) != first.pid:
        assert first.poll() is None and time.monotonic() < deadline, "the first build took no lock"
        time.sleep(0.002)
    first.send_signal(signal.SIGSTOP)
    try:
        assert not loc.is_file(loc.join(out, MANIFEST_FILE)), "the first build finished before it could be stopped"
        second = subprocess.run(build_command(sample_images, out, seed=2), capture_output=True, text=True)
    finally:
        first.send_signal(signal.SIGCONT)
    _, first_err = first.communicate(timeout=120)
    assert first.returncode == 0, first_err
    assert second.returncode == 1, second.stderr
    line = one_error_line(second.stdout + second.stderr)
    assert f"{out} is in use by pid {first.pid} on host {HOST}" in line and "--seed 1" in line
    assert holder_pid(out) is None  # released
    assert_complete_and_rerunnable(out, first_command, seed=1)


@pytest.mark.slow
def test_two_builds_started_together_leave_one_set_whose_command_reruns(sample_images, tmp_path):
    """Whichever wins, the other ends in one line (in use, or another build's set) and the set is the winner's."""
    for attempt in range(3):
        out = str(tmp_path / f"color{attempt}")
        commands = {seed: build_command(sample_images, out, seed) for seed in (1, 2)}
        procs = {seed: subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for seed, c in commands.items()}  # fmt: skip
        outputs = {seed: proc.communicate(timeout=120) for seed, proc in procs.items()}
        winners = [seed for seed, proc in procs.items() if proc.returncode == 0]
        assert len(winners) == 1, outputs
        (loser,) = set(procs) - set(winners)
        output = "".join(outputs[loser])
        if "is in use" in output:  # it came while the winner held the folder
            assert f"in use by pid {procs[winners[0]].pid}" in one_error_line(output)
        else:  # or after the winner had finished: its set is refused as another build's (rich wraps that line)
            assert output.startswith("error:") and "Traceback" not in output, output
            assert "holds a color build with another configuration" in " ".join(output.split()), output
        assert_complete_and_rerunnable(out, commands[winners[0]], seed=winners[0])
