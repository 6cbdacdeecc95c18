"""Refactors change no byte: the tiny shard sets and a fixed-seed CPU run match the recorded fingerprints.

``tests/golden/fingerprints.json`` holds the sha256 of every tar of the trainer's tiny sets (built by the real
producer from scikit-image's photos and synthetic videos) and of every tensor of a 4-step, fixed-seed,
four-task checkpoint, with the library versions and CPU that made them. JPEG encoding and floating point may
legitimately differ on another OpenCV, torch or CPU, so a mismatch of those skips rather than fails.
Re-record (after a deliberate change of output, with a schema-version bump) with
``MTSSL_RECORD_GOLDEN=1 pytest tests/mtssl/train/test_golden.py``.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from mtssl.train.checkpoint import load_checkpoint
from mtssl.train.loop import train

GOLDEN = Path(__file__).parents[2] / "golden" / "fingerprints.json"
RECORD = os.environ.get("MTSSL_RECORD_GOLDEN") == "1"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def environment() -> dict[str, str]:
    return {"opencv": cv2.__version__, "numpy": np.__version__, "torch": torch.__version__, "cpu": cpu_model()}


PAPER_TASKS = ("relpos", "color", "exemplar", "motion")  # the tasks before rotation joined: their bytes must stay


def shard_hashes(shard_root: Path) -> dict[str, str]:
    tars = sorted(p for task in PAPER_TASKS for p in (shard_root / task).glob("*.tar"))
    return {f"{p.parent.name}/{p.name}": hashlib.sha256(p.read_bytes()).hexdigest() for p in tars}


def tensor_hashes(state: dict) -> dict[str, str]:
    """sha256 of every tensor of a checkpoint's model and optimiser state, by dotted name."""
    out: dict[str, str] = {}

    def visit(prefix: str, value) -> None:
        if isinstance(value, torch.Tensor):
            out[prefix] = hashlib.sha256(value.detach().contiguous().cpu().numpy().tobytes()).hexdigest()
        elif isinstance(value, dict):
            for key in sorted(value, key=str):
                visit(f"{prefix}.{key}" if prefix else str(key), value[key])
        elif isinstance(value, list | tuple):
            for i, item in enumerate(value):
                visit(f"{prefix}.{i}", item)

    visit("", {k: state[k] for k in ("model", "optimizer") if k in state})
    return out


def golden(section: str, keys: tuple[str, ...]) -> dict:
    if not GOLDEN.is_file():
        pytest.skip(f"no {GOLDEN.name}: record it with MTSSL_RECORD_GOLDEN=1")
    recorded = json.loads(GOLDEN.read_text())
    env = environment()
    differs = {k: (recorded["environment"][k], env[k]) for k in keys if recorded["environment"][k] != env[k]}
    if differs:
        pytest.skip(f"recorded with other {', '.join(differs)}: {differs}")
    return recorded[section]


def record(section: str, value: dict) -> None:
    data = json.loads(GOLDEN.read_text()) if GOLDEN.is_file() else {}
    data["environment"] = environment()
    data[section] = value
    GOLDEN.parent.mkdir(parents=True, exist_ok=True)
    GOLDEN.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")


def test_the_tiny_shard_sets_have_the_recorded_bytes(shard_root):
    hashes = shard_hashes(shard_root)
    assert {name.split("/")[0] for name in hashes} >= {"relpos", "color", "exemplar", "motion"}
    if RECORD:
        record("shards", hashes)
    expected = golden("shards", ("opencv", "numpy"))
    changed = sorted(name for name in expected if hashes.get(name) != expected[name])
    assert not changed and set(hashes) == set(expected), f"shards whose bytes changed: {changed}"


def test_a_fixed_seed_run_has_the_recorded_weights(tiny_config):
    cfg = tiny_config(steps=4, save_every=4, seed=0, decay="none", tasks=PAPER_TASKS)
    train(cfg)
    state = load_checkpoint(Path(cfg.out) / "ckpt-00000004.pt")
    hashes = tensor_hashes(state)
    assert len(hashes) > 50
    if RECORD:
        record("checkpoint", hashes)
    expected = golden("checkpoint", ("opencv", "numpy", "torch", "cpu"))
    changed = sorted(name for name in expected if hashes.get(name) != expected[name])
    assert not changed and set(hashes) == set(expected), f"{len(changed)} tensors differ, e.g. {changed[:5]}"
