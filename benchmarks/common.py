"""Shared helpers of the benchmarks: input trees, task configs, machine facts and small statistics.

The benchmarks are scripts (``.venv/bin/python benchmarks/<name>.py``); this module sits beside them
and is imported as ``common``. Nothing here writes outside the temporary folders it is given.
"""

from __future__ import annotations

import math
import os
import platform
import shutil
import statistics
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from pipelines.recipes.color import ColorRecipeConfig
from pipelines.recipes.exemplar import ExemplarRecipeConfig
from pipelines.recipes.relpos import RelposRecipeConfig

TASKS = ("relpos", "color", "exemplar")

# Shorter-side ranges (pixels) of the generated trees; the photos are cut with aspect 3:4 .. 4:3.
# "sample" is the embedded sample as `mtssl-data sample` writes it; "imagenet" is ImageNet-like
# (500x375 .. 1000x750 for 4:3 crops).
VARIANTS: dict[str, tuple[int, int]] = {"sample": (256, 480), "imagenet": (375, 750)}
GRAYSCALE_PHOTOS = ("brick", "camera", "coins", "grass", "gravel", "moon")  # class folders of the sample


def default_config(task: str) -> Any:
    """The recipe's paper-default config (its Config dataclass with no arguments; exemplar K = 4)."""
    configs: dict[str, Any] = {
        "relpos": RelposRecipeConfig(),
        "color": ColorRecipeConfig(),
        "exemplar": ExemplarRecipeConfig(),
    }
    return configs[task]


@dataclass(frozen=True)
class Tree:
    """An image tree to benchmark on, with a label for the report."""

    name: str
    root: Path


def write_tree(workdir: Path, variant: str, count: int, seed: int = 0) -> Tree:
    """Write about ``count`` JPEGs (quality 90) of the embedded sample's photos at a variant's sizes.

    The "sample" variant keeps all 15 photos (6 of them grayscale, as `mtssl-data sample` writes them);
    the ImageNet-like one keeps the 9 colour photos only, since ImageNet is almost all colour and a
    grayscale JPEG decodes at about half the cost of a colour one.
    """
    from pipelines.sample import write_image_sample

    root = workdir / f"images-{variant}"
    classes = 15 if variant == "sample" else 15 - len(GRAYSCALE_PHOTOS)
    write_image_sample(root, per_class=math.ceil(count / classes), seed=seed, short_side=VARIANTS[variant])
    if variant != "sample":
        for name in GRAYSCALE_PHOTOS:
            shutil.rmtree(root / name)
    return Tree(variant, root)


def image_paths(root: Path) -> list[Path]:
    """Every input file of a tree, in the order a build lists them."""
    from pipelines.sources import list_image_tree

    return [root / source.relpath for source in list_image_tree(root)]


def describe_tree(paths: list[Path]) -> str:
    """Count, mean size in pixels and bytes, and how many are grayscale JPEGs."""
    from PIL import Image

    sizes, modes = [], []
    for path in paths:
        with Image.open(path) as image:
            sizes.append(image.size)
            modes.append(image.mode)
    mean_w = statistics.fmean(w for w, _ in sizes)
    mean_h = statistics.fmean(h for _, h in sizes)
    mean_kb = statistics.fmean(p.stat().st_size for p in paths) / 1e3
    gray = sum(mode == "L" for mode in modes)
    return f"{len(paths)} JPEGs, mean {mean_w:.0f}x{mean_h:.0f} px, {mean_kb:.0f} KB, {gray} grayscale"


def machine_info() -> dict[str, str]:
    """What the figures were measured on."""
    import cv2

    cpu = "unknown"
    if Path("/proc/cpuinfo").exists():
        names = [
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        ]
        cpu = names[0] if names else cpu
    versions = {name: _version(name) for name in ("numpy", "pillow", "ray", "webdataset")}
    return {
        "cpu": cpu,
        "nproc": str(len(os.sched_getaffinity(0))),
        "python": platform.python_version(),
        "opencv": cv2.__version__,
        **versions,
        "load average (1/5/15 min)": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def commit() -> str:
    """The checkout's commit (with ``+dirty`` when it has uncommitted changes), or "unknown"."""
    import subprocess

    here = Path(__file__).resolve().parent
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=here, capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here, capture_output=True)
    except OSError:
        return "unknown"
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "") if head.returncode == 0 else "unknown"


def command_line() -> str:
    """This run's command as typed from the repository root (``.venv/bin/python benchmarks/...``)."""
    script = Path(sys.argv[0]).resolve()
    root = Path(__file__).resolve().parents[1]
    shown = script.relative_to(root) if script.is_relative_to(root) else script
    return " ".join([".venv/bin/python", str(shown), *sys.argv[1:]])


def write_json(path: Path, figures: dict[str, Any]) -> None:
    """A benchmark's figures with the machine, the commit, the command and the date, for
    ``render_benchmarks.py`` to turn into docs/benchmarks.md."""
    import json
    import time

    record = {
        "machine": machine_info(),
        "commit": commit(),
        "command": command_line(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        **figures,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {path}")


def print_machine() -> None:
    print("machine: " + ", ".join(f"{k} {v}" for k, v in machine_info().items()))
    print(f"command: {Path(sys.executable).name} {' '.join(sys.argv)}")


def median(values: Iterable[float]) -> float:
    return statistics.median(list(values))


def print_table(headers: list[str], rows: list[list[str]]) -> None:
    """A plain fixed-width table (also valid Markdown)."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    print(line(headers))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print(line(row))
