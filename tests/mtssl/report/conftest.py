"""Fake run folders for the report: a log with validation keys and lasso weights, a config, shard sets, probes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

TASKS = ("relpos", "color")
METRICS = {"relpos": "relpos_acc", "color": "color_acc"}
UNITS = 3


def probe_json(trunk: str, acc: float, dataset: str = "flowers5") -> dict:
    """A probe file in the format ``mtssl-eval probe`` writes (5 classes: no top-5 columns)."""
    source = {"linear": acc, "knn": acc - 0.05, "random_linear": 0.52, "random_linear_std": 0.02,
              "random_knn": 0.50, "random_knn_std": 0.01, "dims": 2048}  # fmt: skip
    sources = {name: {**source, "linear": acc - 0.02 * i} for i, name in enumerate(["block1", "block2", "unit1"])}
    sources["eval_lasso"] = {**source, "dims": 64}
    return {
        "dataset": dataset, "trunk": trunk, "n_train": 200, "n_val": 200,
        "classes": ["daisy", "dandelion", "roses", "sunflowers", "<tulips>"],
        "sources": sources,
        "best": {"source": "block1", "classifier": "linear", "acc": acc, "random_source": "block1",
                 "random_classifier": "linear", "random_acc": 0.52, "margin": acc - 0.52},
        "eval_lasso": {"weights": [0.0, 0.3, 0.7]},
    }  # fmt: skip


def log_records(steps: int, lasso: bool = True, val: bool = True) -> list[dict]:
    """``steps`` training records every 10 steps (validation every other one), then the end event."""
    rng = np.random.default_rng(0)
    records = []
    for i in range(steps):
        step = 10 * (i + 1)
        record = {"step": step, "lr": 1e-3 * min(1.0, (i + 1) / 3), "loss": 7.0 / (i + 1), "lasso_penalty": 4e-4,
                  "data_wait": 0.1, "step_s": 0.5}  # fmt: skip
        for t in TASKS:
            record[f"{t}_loss"] = 3.0 / (i + 1) + rng.random() * 0.1
            record[METRICS[t]] = min(1.0, 0.1 * (i + 1))
            record[f"{t}_samples_per_s"] = 30.0
        if lasso:
            start, end = np.eye(UNITS)[0], np.array([0.1, 0.3, 0.6])  # one-hot drifting to a mix
            frac = i / max(steps - 1, 1)
            weights = (1 - frac) * start + frac * end
            record["lasso"] = {"relpos": weights.tolist(), "color": weights[::-1].tolist()}
        if val and i % 2 == 1:
            for t in TASKS:
                record[f"val_{t}_loss"] = record[f"{t}_loss"] * 1.2
                record[f"val_{METRICS[t]}"] = record[METRICS[t]] * 0.9
        records.append(record)
    records.append({"step": 10 * steps, "event": "end"})
    return records


@pytest.fixture(scope="session")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two shard sets: relpos with a tiny preview.png, color without one."""
    root = tmp_path_factory.mktemp("shards")
    for task in TASKS:
        (root / task).mkdir()
        manifest = {"name": task, "shardlist": [{"url": f"{task}-000000.tar", "nsamples": 12}]}
        (root / task / "manifest.json").write_text(json.dumps(manifest))
    Image.fromarray(np.full((24, 48, 3), 200, np.uint8)).save(root / "relpos" / "preview.png")
    return root


def make_run(folder: Path, shards: Path, steps: int = 6, probe_acc: float | None = 0.7, **log_kw) -> Path:
    """One fake run folder as mtssl-train (and mtssl-eval probe, when ``probe_acc``) would leave it."""
    folder.mkdir(parents=True)
    config = {"shards": str(shards), "tasks": None, "depth": 18, "width": 16, "input_mode": "harmonized",
              "lasso": True, "steps": 10 * steps, "batch_size": 8}  # fmt: skip
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in log_records(steps, **log_kw)))
    if probe_acc is not None:
        (folder / "probe-flowers5.json").write_text(json.dumps(probe_json(str(folder / "trunk.pt"), probe_acc)))
    return folder


@pytest.fixture(scope="session")
def two_runs(tmp_path_factory: pytest.TempPathFactory, shards: Path) -> list[Path]:
    """A run with a probe file and a shorter one without."""
    root = tmp_path_factory.mktemp("runs")
    return [make_run(root / "full", shards), make_run(root / "noprobe", shards, steps=4, probe_acc=None)]


@pytest.fixture
def run_factory(tmp_path: Path, shards: Path):
    """``run_factory(name, **kw)``: a fresh fake run under this test's tmp_path (see :func:`make_run`)."""
    return lambda name, **kw: make_run(tmp_path / name, shards, **kw)
