"""benchmarks/bench_gpu.py runs end to end on the CPU at a tiny size (the GPU figures need a lent GPU)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.slow  # starts processes

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_gpu.py"


def test_the_gpu_benchmark_runs_on_cpu_at_a_tiny_size(tmp_path):
    out = tmp_path / "gpu.json"
    args = ["--device", "cpu", "--depth", "18", "--width", "8", "--batch", "4", "--steps", "4"]
    done = subprocess.run(
        [sys.executable, str(SCRIPT), *args, "--workers", "1", "--no-compile", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    runs = json.loads(out.read_text())["runs"]
    assert [(r["workers"], r["compile"]) for r in runs] == [(2, False), (1, False)]
    for r in runs:
        assert set(r["samples_per_s"]) == {"relpos", "color", "exemplar", "motion"} and r["step_s"] > 0
        assert 0 <= r["data_wait"] <= 1 and r["peak_gpu_gib"] is None


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is here")
def test_the_gpu_benchmark_refuses_cuda_without_a_device():
    done = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "no CUDA device" in done.stderr
