"""Checkpoints: written atomically, read back with ``weights_only=True``, pruned, and a trunk-only export.

A checkpoint is ``<out>/ckpt-<step>.pt``, a dict of tensors and plain containers only (the config as a
JSON string, RNG states as tensors), so loading never unpickles arbitrary objects. It is written to a
temporary file, fsynced and renamed into place, and the folder is fsynced: a process killed at any
moment leaves either the new checkpoint complete or no trace of it but a temporary file, which is
ignored and removed by the next save. ``latest`` names the newest checkpoint for people and tools;
resuming takes the newest checkpoint that loads (a renamed checkpoint is always complete, so that is
the newest one unless the disk lost data).
"""

from __future__ import annotations

import errno
import io
import random
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mtssl.contract import finish, remove_stale_tmp, tmp_path, write_bytes_atomic
from mtssl.train.errors import SaveError

CKPT_RE = re.compile(r"^ckpt-(\d{8})\.pt$")
LATEST = "latest"
TRUNK_FILE = "trunk.pt"


def checkpoint_name(step: int) -> str:
    return f"ckpt-{step:08d}.pt"


def save_atomic(obj: Any, path: Path) -> None:
    """``torch.save`` to memory, then write-then-rename beside ``path`` (fsynced): see the module docstring.

    Serialising to memory first means the disk write is a plain file write, whose failure is an OSError
    with its errno: a full disk reads "no space left on device", not the zip writer's "unexpected pos"
    that ``torch.save`` straight to a file gives. The temporary file is removed and :class:`SaveError`
    says where and what to do; the previous checkpoint stays, so ``--resume`` continues from it."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    tmp = tmp_path(path)
    try:
        with open(tmp, "wb") as fh:
            fh.write(buffer.getbuffer())
        finish(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise SaveError(save_failure(path, exc)) from exc


def save_failure(path: Path, exc: OSError) -> str:
    """One line for a failed write: what, where, why in plain words, what to do."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"could not write {path}: no space left on device; free space there, then rerun with --resume"
    reason = (exc.strerror or str(exc)).lower()
    return f"could not write {path} ({reason}); fix that (permissions, the disk), then rerun with --resume"


def write_text_atomic(path: Path, text: str) -> None:
    write_bytes_atomic(path, text.encode())


def checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """(step, path) of every finished checkpoint in ``run_dir``, oldest first."""
    if not Path(run_dir).is_dir():
        return []
    found = [(int(m.group(1)), p) for p in Path(run_dir).iterdir() if (m := CKPT_RE.match(p.name))]
    return sorted(found)


def save_checkpoint(run_dir: Path, state: dict[str, Any], keep: int = 2) -> Path:
    """Write ``ckpt-<state['step']>.pt`` atomically, point ``latest`` at it, keep the newest ``keep``."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_tmp(run_dir)  # left by a process killed mid-write (a live writer's are its own)
    path = run_dir / checkpoint_name(int(state["step"]))
    save_atomic(state, path)
    write_text_atomic(run_dir / LATEST, path.name + "\n")
    for _, old in checkpoints(run_dir)[:-keep]:
        old.unlink(missing_ok=True)
    return path


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load on the CPU (RNG states must stay CPU tensors) with ``weights_only=True``: no arbitrary pickle."""
    return torch.load(path, map_location="cpu", weights_only=True)


class DamagedCheckpoints(RuntimeError):
    """Every checkpoint of a run failed to load."""


_REPORTED: set[Path] = set()  # damaged checkpoints already reported by this process


def _first_line(exc: Exception) -> str:
    """An exception in one line, without torch's advice to load with ``weights_only=False`` (never taken)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if text.startswith("Weights only load failed"):
        return "not a weights-only checkpoint (truncated, overwritten, or holding pickled objects)"
    return text[:200]


def load_latest(run_dir: Path) -> tuple[Path, dict[str, Any]] | None:
    """The newest checkpoint of ``run_dir`` that loads, or None when there is none; a damaged one is
    reported once (one line) and the one before it tried. Raises :class:`DamagedCheckpoints` when there
    are checkpoints and none loads."""
    found = list(reversed(checkpoints(run_dir)))
    for _, path in found:
        try:
            return path, load_checkpoint(path)
        except Exception as exc:  # a damaged file: say so and fall back to the previous checkpoint
            if path not in _REPORTED:
                _REPORTED.add(path)
                warnings.warn(f"skipping damaged checkpoint {path.name}: {_first_line(exc)}", stacklevel=2)
    if found:
        raise DamagedCheckpoints(
            f"all {len(found)} checkpoints in {run_dir} are damaged ({', '.join(p.name for _, p in found)}); "
            "nothing to resume: start again with another --out (or without --resume after removing them)"
        )
    return None


# ---- RNG states as tensors -------------------------------------------------------------------------------


def rng_state(generator: torch.Generator) -> dict[str, Any]:
    """Global torch/CUDA/numpy/python RNG states and the augmentation generator's, as tensors and ints."""
    keys, pos, has_gauss, gauss = np.random.get_state()[1:]
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos), "has_gauss": int(has_gauss)},
        "numpy_gauss": float(gauss),
        "python": random.getstate(),
        "generator": generator.get_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any], generator: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    numpy = state["numpy"]
    keys = numpy["keys"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", keys, numpy["pos"], numpy["has_gauss"], state["numpy_gauss"]))
    random.setstate(state["python"])
    generator.set_state(state["generator"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


# ---- trunk-only export -----------------------------------------------------------------------------------


def export_trunk(run_dir: Path, net: torch.nn.Module, network_json: str, step: int) -> Path:
    """``trunk.pt``: the trunk's weights, the lasso weights and the network config, for downstream use.

    Read it with ``torch.load(path, weights_only=True)``; rebuild the trunk with
    ``ResNetV2Trunk(TrunkConfig(depth, width, in_channels, slim_strides))`` from ``json.loads(network)``.
    """
    lasso = net.lasso
    payload = {
        "trunk": {k: v.detach().cpu() for k, v in net.trunk.state_dict().items()},
        "lasso_norms": {k: v.detach().cpu() for k, v in lasso.norms.state_dict().items()},
        "lasso": net.lasso_weights().cpu(),
        "lasso_rows": list(net.config.tasks),
        "network": network_json,
        "step": step,
    }
    path = Path(run_dir) / TRUNK_FILE
    save_atomic(payload, path)
    return path
