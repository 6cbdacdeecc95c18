"""The work of one sweep item: train (or resume) the run, then probe it on each probe set.

Each step is the normal command (``mtssl-train --config``, ``mtssl-eval probe``) in a child process, so a
run in a sweep is exactly a run by hand: its own torch threads (sized to the item's CPU share through
``OMP_NUM_THREADS``), its own signal handling and checkpoints, its output appended to the item's log file.
The child is told to stop (SIGTERM) when the process that started it dies, so a killed sweep leaves no
orphan training: the rerun resumes from the newest checkpoint. Runs in a Ray task or in the driver alike.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

PR_SET_PDEATHSIG = 1  # linux/prctl.h


PROGRAMS = {"mtssl-train": "mtssl.train.cli", "mtssl-eval": "mtssl.eval.cli"}


def program(name: str) -> list[str]:
    """An mtssl program as this Python runs it (``python -m``): the same environment on a Ray node that
    has the package only through the job's ``py_modules``, where no console script is installed."""
    return [sys.executable, "-m", PROGRAMS[name]]


def _die_with_parent() -> None:  # runs in the child between fork and exec (Linux; elsewhere a no-op)
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def child_env(cpus: float) -> dict[str, str]:
    """The environment of a run's process: torch, OpenMP and BLAS threads sized to its CPU share."""
    threads = str(max(1, int(cpus)))
    env = dict(os.environ)
    env.update({"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads})
    return env


def run_logged(command: list[str], log_file: Path, cpus: float) -> tuple[int, float]:
    """Run ``command`` with its output appended to ``log_file``; (exit code, seconds)."""
    tic = time.perf_counter()
    with open(log_file, "a") as log:
        log.write(f"\n$ {' '.join(command)}\n")
        log.flush()
        child = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=child_env(cpus),
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )
        try:
            code = child.wait()
        except BaseException:  # Ctrl-C, a cancelled Ray task: let the run stop as on Ctrl-C (it keeps its
            child.send_signal(signal.SIGTERM)  # checkpoints), then make sure it is gone
            try:
                child.wait(timeout=120)
            except subprocess.TimeoutExpired:
                child.kill()
            raise
    return code, time.perf_counter() - tic


def probe_command(folder: Path, name: str, options: dict[str, Any]) -> list[str]:
    command = [*program("mtssl-eval"), "probe", "--run", str(folder), "--name", name]
    for key, value in options.items():
        command += [f"--{key.replace('_', '-')}", str(value)]
    return command


def last_error(log_file: Path, lines: int = 3) -> str:
    """The last lines of the item's log that say what went wrong (``error:`` lines first)."""
    text = log_file.read_text(errors="replace").splitlines() if log_file.is_file() else []
    errors = [line for line in text if line.startswith("error:") or "Error" in line]
    picked = errors[-1:] if errors else text[-lines:]
    return " / ".join(line.strip() for line in picked)[:400]


def run_item(item: dict[str, Any], cpus: float) -> dict[str, Any]:
    """Train then probe one item (``Item.to_plain()``); a result dict, never an exception for a failed run."""
    folder, log_file = Path(item["folder"]), Path(item["log_file"])
    result: dict[str, Any] = {"name": item["name"], "train_s": 0.0, "probe_s": {}, "status": "ok", "error": ""}
    if not ((folder / "trunk.pt").is_file() and _ended(folder, item["steps"])):
        command = [*program("mtssl-train"), "--config", item["config_file"], "--no-progress"]
        command += ["--resume"] if any(folder.glob("ckpt-*.pt")) else []
        code, seconds = run_logged(command, log_file, cpus)
        result["train_s"] = seconds
        if code != 0:
            return result | {"status": "failed", "exit": code, "error": f"mtssl-train: {last_error(log_file)}"}
    for name, options in item["probes"].items():
        if (folder / f"probe-{name}.json").is_file():
            continue
        code, seconds = run_logged(probe_command(folder, name, options), log_file, cpus)
        result["probe_s"][name] = seconds
        if code != 0:
            return result | {
                "status": "failed",
                "exit": code,
                "error": f"mtssl-eval probe {name}: {last_error(log_file)}",
            }
    return result


def _ended(folder: Path, steps: int) -> bool:
    from mtssl.sweep.plan import ended

    return ended(folder / "log.jsonl", steps)
