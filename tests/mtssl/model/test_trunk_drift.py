"""benchmarks/trunk_drift.py: a trunk that never trained is at cosine 1 from its initial weights; training moves it."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import torch

from mtssl.train.checkpoint import export_trunk
from mtssl.train.loop import seed_everything

SCRIPT = Path(__file__).resolve().parents[3] / "benchmarks" / "trunk_drift.py"


def export_run(tmp_path: Path, name: str, tiny_net, seed: int, move_stem: bool) -> Path:
    """A run folder whose trunk is built right after seeding, as the trainer builds it; maybe its stem moved."""
    run = tmp_path / name
    run.mkdir()
    seed_everything(seed)
    net = tiny_net()
    if move_stem:
        with torch.no_grad():  # every stem filter becomes the same filter: rank 1
            net.trunk.conv1.weight.copy_(net.trunk.conv1.weight[:1].expand_as(net.trunk.conv1.weight))
    export_trunk(run, net, json.dumps(net.resolved_config()), step=3)
    (run / "config.json").write_text(json.dumps({"seed": seed}))
    return run


def drift(*runs: Path) -> str:
    done = subprocess.run([sys.executable, str(SCRIPT), *map(str, runs)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_an_untrained_trunk_is_at_its_init_and_a_collapsed_stem_shows(tmp_path: Path, tiny_net):
    fresh = export_run(tmp_path, "fresh", tiny_net, seed=7, move_stem=False)
    moved = export_run(tmp_path, "moved", tiny_net, seed=7, move_stem=True)
    first, second = drift(fresh, moved).split("== ")[1:]
    for stage in ("block1", "block2", "block3"):
        assert f"{stage}: cosine to init 1.00-1.00" in first and f"{stage}: cosine to init 1.00-1.00" in second
    ranks = [re.search(r"effective rank ([\d.]+) -> ([\d.]+)", text).groups() for text in (first, second)]
    assert ranks[0][0] == ranks[0][1] and float(ranks[0][0]) > 4  # untouched: the init's rank
    assert float(ranks[1][1]) == 1.0  # identical filters: rank 1
    assert "stem (8, 1, 7, 7): cosine 1.00" in first and "stem (8, 1, 7, 7): cosine 1.00" not in second
