"""The loader and build benchmarks write JSON that docs/benchmarks.md is regenerated from."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # starts processes

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def run(script: str, *args: str) -> None:
    done = subprocess.run([sys.executable, str(BENCH / script), *args], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]


def test_the_benchmarks_json_parses_and_renders_into_the_page(tmp_path):
    loader, build = tmp_path / "loader.json", tmp_path / "build_rate.json"
    run("bench_loader.py", "--images", "12", "--tasks", "relpos", "--batch", "4", "--seconds", "0.05", "--repeat", "1",
        "--json", str(loader))  # fmt: skip
    run("bench_build_rate.py", "--variants", "imagenet", "--count", "10", "--repeat", "1", "--tasks", "color",
        "--json", str(build))  # fmt: skip
    relpos = json.loads(loader.read_text())["tasks"]["relpos"]
    assert {"loader_per_s", "decode_limit_per_s", "fly_per_s"} <= relpos.keys()
    assert relpos["loader_per_s"] > 0 and relpos["decode_limit_per_s"] > 0 and relpos["fly_per_s"] > 0
    color = json.loads(build.read_text())["trees"]["imagenet"]["tasks"]["color"]
    assert {"build_per_s", "decode_per_s"} <= color.keys() and color["build_per_s"] > 0
    for record in (json.loads(loader.read_text()), json.loads(build.read_text())):
        assert record["commit"] and record["machine"]["load average (1/5/15 min)"] and record["command"]

    page = tmp_path / "benchmarks.md"
    blocks = "".join(f"<!-- generated: {n} -->\nstale\n<!-- end generated: {n} -->\n" for n in ("loader", "build_rate"))
    page.write_text("# Benchmarks\n\nprose\n" + blocks)
    run("render_benchmarks.py", "--page", str(page), "--figures", str(tmp_path))
    text = page.read_text()
    assert "stale" not in text and "prose" in text and "| relpos |" in text and "| color |" in text
    run("render_benchmarks.py", "--page", str(page), "--figures", str(tmp_path), "--check")
