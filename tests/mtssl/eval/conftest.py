"""Evaluation fixtures.

``motion_*`` (``mtssl-eval motion``): a tiny run folder (a depth-18, width-4 network with a motion head,
saved as the trainer saves a checkpoint) and a tiny DAVIS-layout folder whose foreground is the only bright
thing in each frame, so a predictor can read the ground truth off the frame.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

MOTION_FRAME = (48, 64)  # height, width: the fixture's frames and masks
MOTION_BLOCK = 16  # foreground squares are 16-px aligned, so the JPEG frames keep them exactly


def _motion_run(
    folder: Path, tasks: tuple[str, ...] = ("motion",), recipe_size: int | None = None, step: int = 7
) -> Path:
    from mtssl.model import MultiTaskNet, NetworkConfig
    from mtssl.tasks import MotionHeadConfig, RelposHeadConfig
    from mtssl.train.checkpoint import save_checkpoint
    from mtssl.train.config import TrainConfig

    torch.manual_seed(0)
    task_configs = {
        "motion": MotionHeadConfig(hidden=8),
        "relpos": RelposHeadConfig(patch_channels=8, patch_dim=32, pair_dims=(32,)),
    }
    net = MultiTaskNet(NetworkConfig(tasks=tasks, depth=18, width=4), task_configs)
    shards = folder.parent / f"{folder.name}-shards"
    config = TrainConfig(shards=str(shards), out=str(folder), tasks=tasks, depth=18, width=4)
    state = {
        "step": step,
        "model": net.state_dict(),
        "network": json.dumps(net.resolved_config()),
        "config": config.to_json(),
    }
    save_checkpoint(folder, state)
    (folder / "config.json").write_text(config.to_json())
    if recipe_size is not None:  # the motion shard set's manifest, as far as the evaluation reads it
        (shards / "motion").mkdir(parents=True)
        manifest = {"task": "motion", "config": {"recipe": {"size": recipe_size, "mask": {"gap": 3}}}}
        (shards / "motion" / "manifest.json").write_text(json.dumps(manifest))
    return folder


@pytest.fixture
def motion_run(tmp_path: Path) -> Callable[..., Path]:
    """Factory: ``motion_run(name="run", tasks=("motion",), recipe_size=None)``, an untrained tiny run folder.

    ``recipe_size`` also writes the run's motion shard manifest (``config.recipe.size``) where the run's
    ``config.json`` points.
    """

    def make(name: str = "run", **kwargs) -> Path:
        return _motion_run(tmp_path / name, **kwargs)

    return make


def _motion_sequence(folder_frames: Path, folder_masks: Path, corners: list[tuple[int, int] | None], seed: int):
    rng = np.random.default_rng(seed)
    folder_frames.mkdir(parents=True)
    folder_masks.mkdir(parents=True)
    height, width = MOTION_FRAME
    background = rng.integers(0, 80, (height, width), dtype=np.uint8)  # dark texture: the flow has something
    for index, corner in enumerate(corners):
        frame, mask = background.copy(), np.zeros((height, width), np.uint8)
        if corner is not None:
            y, x = corner
            frame[y : y + MOTION_BLOCK, x : x + 2 * MOTION_BLOCK] = 255
            mask[y : y + MOTION_BLOCK, x : x + 2 * MOTION_BLOCK] = 255
        rgb = np.repeat(frame[..., None], 3, axis=2)
        cv2.imwrite(str(folder_frames / f"{index:05d}.jpg"), rgb, [cv2.IMWRITE_JPEG_QUALITY, 95])
        cv2.imwrite(str(folder_masks / f"{index:05d}.png"), mask)


@pytest.fixture
def motion_davis(tmp_path: Path) -> tuple[Path, Path]:
    """``(videos, masks)`` in DAVIS layout, 64 x 48 frames: ``slide`` (4 frames, a bright 32 x 16 block moving
    16 px a frame), ``drop`` (3 frames, moving down) and ``blank`` (3 frames, empty ground truth)."""
    videos, masks = tmp_path / "JPEGImages", tmp_path / "Annotations"
    _motion_sequence(videos / "slide", masks / "slide", [(16, 0), (16, 16), (16, 16), (16, 32)], seed=1)
    _motion_sequence(videos / "drop", masks / "drop", [(0, 16), (16, 16), (32, 16)], seed=2)
    _motion_sequence(videos / "blank", masks / "blank", [None, None, None], seed=3)
    return videos, masks


@pytest.fixture
def motion_one_thread():
    """One intra-op torch thread (tiny tensors gain nothing from more; the cores are shared)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
