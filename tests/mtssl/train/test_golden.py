"""Refactors change no byte and no behaviour: the tiny shard sets and a fixed-seed CPU run match the recording.

``tests/golden/fingerprints.json`` holds the sha256 of every tar of the trainer's tiny sets (built by the real
producer from scikit-image's photos and synthetic videos), which are exact by construction for one OpenCV
build and SIMD level (``opencv_simd``: AVX2 or not, the one dispatch measured to change a byte), and a sketch of
every tensor of a 4-step, fixed-seed, four-task checkpoint, with the library versions that made them.

Floating point is not bit-exact across CPU models, SIMD kernels (AVX-512, AVX2, scalar) and thread counts,
so the checkpoint is compared within a tolerance rather than by hash. Each float tensor is recorded as
``PROJECTIONS`` random projections (fixed Gaussian vectors seeded by the tensor's name), which estimate the
L2 norm of a difference without storing the weights; the error of a tensor is that estimate as an RMS over
its elements, divided by the RMS of its kind (``weight``, ``running_var``, ``square_avg``, ...) in the
recording. Measured on one AMD EPYC (AVX-512), 2026-12-06, against a run at default kernels: forcing AVX2
(``ATEN_CPU_CAPABILITY=avx2``), scalar kernels (``=default``), oneDNN at AVX2 or two threads moves the worst
tensor by at most 3.2e-5; the smallest behaviour change tried (weight decay 1e-4 -> 1.1e-4) moves it by 1.4e-2,
lr +1% by 4.3, another seed by 78. ``TOLERANCE`` sits between them, 30x above the kernel noise.
Integer tensors (step counts, BN batch counts) stay exact.

Re-record (after a deliberate change of output, with a schema-version bump) with
``MTSSL_RECORD_GOLDEN=1 pytest tests/mtssl/train/test_golden.py``.
"""

from __future__ import annotations

import hashlib
import json
import os
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from mtssl.train.checkpoint import load_checkpoint
from mtssl.train.loop import train

GOLDEN = Path(__file__).parents[2] / "golden" / "fingerprints.json"
RECORD = os.environ.get("MTSSL_RECORD_GOLDEN") == "1"
PROJECTIONS = 16
TOLERANCE = 1e-3

PAPER_TASKS = ("relpos", "color", "exemplar", "motion")  # the tasks before rotation joined: their bytes must stay


def opencv_simd() -> str:
    """Whether OpenCV dispatches its AVX2 kernels here: the one CPU feature measured to change shard bytes
    (with ``OPENCV_CPU_DISABLE=AVX2`` an exemplar shard differs; without AVX-512 or AVX-VNNI none does)."""
    features = cv2.getCPUFeaturesLine().split()
    return "avx2" if "*AVX2" in features else "no avx2"


def environment() -> dict[str, str]:
    return {
        "opencv": cv2.__version__,
        "opencv_simd": opencv_simd(),
        "numpy": np.__version__,
        "torch": torch.__version__,
    }


def shard_hashes(shard_root: Path) -> dict[str, str]:
    tars = sorted(p for task in PAPER_TASKS for p in (shard_root / task).glob("*.tar"))
    return {f"{p.parent.name}/{p.name}": hashlib.sha256(p.read_bytes()).hexdigest() for p in tars}


def flat_tensors(state: dict) -> dict[str, np.ndarray]:
    """Every tensor of a checkpoint's model and optimiser state, by dotted name."""
    out: dict[str, np.ndarray] = {}

    def visit(prefix: str, value) -> None:
        if isinstance(value, torch.Tensor):
            out[prefix] = value.detach().cpu().numpy()
        elif isinstance(value, dict):
            for key in sorted(value, key=str):
                visit(f"{prefix}.{key}" if prefix else str(key), value[key])
        elif isinstance(value, list | tuple):
            for i, item in enumerate(value):
                visit(f"{prefix}.{i}", item)

    visit("", {k: state[k] for k in ("model", "optimizer") if k in state})
    return out


def kind(name: str) -> str:
    """What a tensor is, for its scale: the last part of its name, model and optimiser state apart."""
    return ("model." if name.startswith("model.") else "") + name.rsplit(".", 1)[-1]


def projections(name: str, values: np.ndarray) -> list[float]:
    """``PROJECTIONS`` dot products with fixed Gaussian vectors seeded by ``name`` (float64)."""
    flat = values.astype(np.float64).ravel()
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    return (rng.standard_normal((PROJECTIONS, flat.size)) @ flat).tolist()


def sketch(tensors: dict[str, np.ndarray]) -> dict:
    """What the recording keeps: float tensors as projections with the RMS of each kind, the rest hashed."""
    floats = {k: v for k, v in tensors.items() if np.issubdtype(v.dtype, np.floating)}
    by_kind: dict[str, list[np.ndarray]] = {}
    for name, values in floats.items():
        by_kind.setdefault(kind(name), []).append(values.astype(np.float64).ravel())
    return {
        "projections": {k: {"shape": list(v.shape), "proj": projections(k, v)} for k, v in floats.items()},
        "kind_rms": {k: float(np.sqrt(np.mean(np.concatenate(v) ** 2))) for k, v in by_kind.items()},
        "exact": {
            k: hashlib.sha256(np.ascontiguousarray(v).tobytes()).hexdigest()
            for k, v in tensors.items()
            if k not in floats
        },
    }


def tensor_errors(recorded: dict, tensors: dict[str, np.ndarray]) -> dict[str, float]:
    """Each float tensor's estimated RMS difference from the recording, relative to its kind's RMS."""
    errors = {}
    for name, entry in recorded["projections"].items():
        values = tensors[name]
        diff = np.asarray(projections(name, values)) - np.asarray(entry["proj"])
        rms_diff = np.sqrt(np.mean(diff**2) / values.size)  # E[(g.d)^2] = |d|^2 for Gaussian g
        errors[name] = float(rms_diff / max(recorded["kind_rms"][kind(name)], 1e-12))
    return errors


def golden(section: str, keys: tuple[str, ...]) -> dict:
    if not GOLDEN.is_file():
        pytest.skip(f"no {GOLDEN.name}: record it with MTSSL_RECORD_GOLDEN=1")
    recorded = json.loads(GOLDEN.read_text())
    env = environment()
    differs = {k: (recorded["environment"].get(k), env[k]) for k in keys if recorded["environment"].get(k) != env[k]}
    if differs:
        pytest.skip(f"recorded with other {', '.join(differs)}: {differs}")
    if section not in recorded:
        pytest.skip(f"no {section} in {GOLDEN.name}: record it with MTSSL_RECORD_GOLDEN=1")
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
    expected = golden("shards", ("opencv", "opencv_simd", "numpy"))
    changed = sorted(name for name in expected if hashes.get(name) != expected[name])
    assert not changed and set(hashes) == set(expected), f"shards whose bytes changed: {changed}"


def fixed_seed_run(tiny_config) -> dict[str, np.ndarray]:
    cfg = tiny_config(steps=4, save_every=4, seed=0, decay="none", tasks=PAPER_TASKS)
    train(cfg)
    return flat_tensors(load_checkpoint(Path(cfg.out) / "ckpt-00000004.pt"))


def test_a_fixed_seed_run_has_the_recorded_weights(tiny_config):
    tensors = fixed_seed_run(tiny_config)
    assert len(tensors) > 50
    if RECORD:
        record("checkpoint_sketch", sketch(tensors))
    expected = golden("checkpoint_sketch", ("opencv", "opencv_simd", "numpy", "torch"))
    assert set(tensors) == set(expected["projections"]) | set(expected["exact"]), "the checkpoint's tensors changed"
    for name, entry in expected["projections"].items():
        assert list(tensors[name].shape) == entry["shape"], f"{name}: shape {tensors[name].shape}"
    exact = sorted(n for n, h in expected["exact"].items() if hashlib.sha256(tensors[n].tobytes()).hexdigest() != h)
    assert not exact, f"integer tensors differ: {exact}"
    errors = tensor_errors(expected, tensors)
    worst = sorted(errors, key=errors.get, reverse=True)[:5]
    assert errors[worst[0]] < TOLERANCE, "weights moved beyond kernel noise: " + ", ".join(
        f"{n} {errors[n]:.1e}" for n in worst
    )


def test_the_tolerance_sees_a_small_change_of_training(tiny_config):
    """The check can fail: weight decay 1e-4 -> 1.1e-4 over 4 steps lands above TOLERANCE."""
    base = fixed_seed_run(tiny_config)
    cfg = tiny_config(steps=4, save_every=4, seed=0, decay="none", tasks=PAPER_TASKS, weight_decay=1.1e-4)
    cfg = type(cfg)(**{**cfg.__dict__, "out": cfg.out + "-wd"})
    train(cfg)
    changed = flat_tensors(load_checkpoint(Path(cfg.out) / "ckpt-00000004.pt"))
    errors = tensor_errors(sketch(base), changed)
    same = tensor_errors(sketch(base), base)
    assert max(same.values()) == 0.0
    assert max(errors.values()) > TOLERANCE
