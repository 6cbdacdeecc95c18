"""Tiny shard sets of every task, built by the real producer, for the consumer's tests.

The sets are built in-process (no Ray) at small sizes: 32-px relpos patches and exemplar views, 64-px
colour crops and rotation images, 96 x 128 motion frames of textured squares moving over a textured
background (whose masks are the squares), so a depth-18, width-8 trunk trains in seconds.
"""

from __future__ import annotations

import shutil
from dataclasses import fields
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from mtssl.tasks import TASKS

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")


def changed_fields(config: Any) -> dict[str, Any]:
    """A config dataclass's fields that differ from their defaults: its ``--task-opt`` form."""
    return {f.name: getattr(config, f.name) for f in fields(config) if getattr(config, f.name) != f.default}


def tiny_task_options() -> dict[str, dict[str, Any]]:
    """Every task's ``tiny_config()`` as ``TrainConfig.task_options`` (the tiny runs' heads)."""
    return {name: changed_fields(task.tiny_config()) for name, task in TASKS.items()}


TINY_TASK_OPTIONS = tiny_task_options()


def moving_squares(count: int, seed: int, height: int = 96, width: int = 128) -> list[np.ndarray]:
    """A textured square moving over a textured static background (about 17% of the frame moves)."""
    rng = np.random.default_rng(seed)
    background = cv2.resize(rng.integers(0, 256, (height // 4, width // 4, 3), dtype=np.uint8), (width, height))
    square = cv2.resize(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8), (44, 44), interpolation=cv2.INTER_NEAREST)
    y0, x0, dy, dx = int(rng.integers(4, 40)), int(rng.integers(4, 20)), int(rng.integers(-1, 2)), 2
    frames = []
    for i in range(count):
        frame = background.copy()
        y, x = min(max(y0 + dy * i, 0), height - 44), min(x0 + dx * i, width - 44)
        frame[y : y + 44, x : x + 44] = square
        frames.append(frame)
    return frames


def build_sets(root: Path) -> Path:
    """Build a tiny set of every task under ``root/shards`` with the real producer."""
    from pipelines.build import build
    from pipelines.motion.clips import write_video
    from pipelines.recipes.color import ColorRecipeConfig
    from pipelines.recipes.exemplar import ExemplarRecipeConfig
    from pipelines.recipes.jigsaw import JigsawRecipeConfig
    from pipelines.recipes.motion import MotionRecipeConfig
    from pipelines.recipes.relpos import RelposRecipeConfig
    from pipelines.recipes.rotation import RotationRecipeConfig
    from pipelines.sample import write_image_sample

    images, videos, shards = root / "images", root / "videos", root / "shards"
    write_image_sample(images, per_class=2, seed=0, short_side=(160, 200))
    for folder in images.iterdir():  # a fixed small subset of colour photos: losses comparable across steps
        if folder.name not in PHOTOS:
            shutil.rmtree(folder)
    recipes = {
        "relpos": RelposRecipeConfig(patch=32, gap=16, jitter=4, min_area=20_000, max_area=30_000, min_source_side=64),
        "color": ColorRecipeConfig(size=64, min_source_side=64),
        "exemplar": ExemplarRecipeConfig(views=4, view_size=32, min_source_side=32),
        "rotation": RotationRecipeConfig(size=64, min_source_side=64),
        "jigsaw": JigsawRecipeConfig(short_side=96, size=96, tile=16, min_source_side=64),
    }
    for task, recipe in recipes.items():
        build(task, images, shards / task, recipe, workers=0, samples_per_shard=4, show_progress=False)
    for seed in range(3):
        write_video(videos / f"square{seed}.mp4", moving_squares(16, seed))
    motion = MotionRecipeConfig(size=96, stride=2, max_frames=None, segment_frames=100, min_source_side=32)
    build("motion", videos, shards / "motion", motion, workers=0, samples_per_shard=4, show_progress=False)
    return shards


def flip_middle_bytes(shard: Path, count: int = 16) -> None:
    """Flip ``count`` bytes in the middle of the shard's largest payload: the tar headers stay intact, the
    sample may still decode (wrongly), and the shard's md5 no longer matches its manifest."""
    import tarfile

    with tarfile.open(shard) as tar:
        largest = max(tar.getmembers(), key=lambda m: m.size)
    data = bytearray(shard.read_bytes())
    middle = largest.offset_data + largest.size // 2
    data[middle : middle + count] = bytes(b ^ 0xFF for b in data[middle : middle + count])
    shard.write_bytes(bytes(data))
