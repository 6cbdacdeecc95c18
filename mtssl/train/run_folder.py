"""The run folder: one writer at a time (its lock), and the checkpoint a run continues from."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mtssl.contract.locks import hold
from mtssl.train import checkpoint as ckpt
from mtssl.train.config import ConfigError


@contextlib.contextmanager
def run_folder_lock(out: Path) -> Iterator[None]:
    """Hold the run folder's lock (``mtssl.contract.locks``) in the process that writes it: rank 0 (torchrun
    sets ``RANK``; the other ranks write nothing there). A folder made only to hold the lock is removed
    again when the run ends before writing anything into it (a refused option, missing shards)."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file, not a folder: choose a folder for the run")
    if int(os.environ.get("RANK", "0")) != 0:
        yield
        return
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        with hold(out, what="training run"):
            yield
    finally:
        if created and out.is_dir() and not any(out.iterdir()):
            out.rmdir()


def latest_checkpoint(out: Path) -> tuple[Path, dict[str, Any]]:
    """The newest checkpoint of the run in ``out`` that loads: one line when there is none, or all are damaged."""
    try:
        found = ckpt.load_latest(out)
    except ckpt.DamagedCheckpoints as exc:
        raise ConfigError(f"--resume: {exc}") from None
    if found is None:
        raise ConfigError(f"--resume: no checkpoint in {out}")
    return found


def resume_point(out: Path, resume: bool, steps: int) -> tuple[Path, dict[str, Any]] | None:
    """The checkpoint a run continues from (None for a new run), checked against the folder and ``steps``."""
    if not resume:
        if ckpt.checkpoints(out):
            raise ConfigError(f"{out} already holds a run: pass --resume to continue it, or choose another --out")
        return None
    found = latest_checkpoint(out)
    if int(found[1]["step"]) > steps:
        raise ConfigError(
            f"--resume --steps {steps}: {out} is already at step {int(found[1]['step'])}; ask for more steps, "
            "or leave --steps out to finish the run's own"
        )
    return found
