"""Rotation prediction (Gidaris, Singh & Komodakis, ICLR 2018): which of 0, 90, 180, 270 degrees?

The recipe stores one upright square image per input; the trainer rotates it all four ways on the device
and classifies the rotation (``mtssl/tasks/rotation.py``). One image rather than its four rotations: a
quarter of the bytes and of the JPEG decoding per sample for the same four training inputs
(``benchmarks/bench_rotation_storage.py``, ``docs/benchmarks.md``). The side is a multiple of 16 so that
the JPEG block grid maps onto itself under every rotation: block edges do not tell the angle.

Image-side choices follow Gidaris et al.'s ImageNet setup: the shorter side resized to ``size`` (256),
a random square crop of it (the trainer may crop further, e.g. their 224).

Stored per sample: ``rgb.jpg``, the upright ``size`` x ``size`` image, and ``json`` (crop and resize).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mtssl.contract import encode_jpeg
from pipelines.drawing import hstack, label
from pipelines.recipes.base import Recipe, RecipeOutput
from pipelines.resize import resize_short_side

ANGLES = (0, 90, 180, 270)  # the classes, counter-clockwise, as the trainer's torch.rot90 turns them


@dataclass(frozen=True)
class RotationRecipeConfig:
    size: int = 256  # side of the stored square image, in px, a multiple of 16 (Gidaris et al. resize
    #   ImageNet images to 256 and take 224-px crops when training)
    min_source_side: int = 128  # reject images whose shorter side is smaller than this, in px (no image is
    #   enlarged more than 2 times)
    jpeg_quality: int = 95  # JPEG quality of the stored image, 1-100

    def __post_init__(self) -> None:
        if self.size % 16:
            raise ValueError(f"rotation size must be a multiple of 16 (JPEG blocks), got {self.size}")


def make_sample(rgb: np.ndarray, rng: np.random.Generator, cfg: RotationRecipeConfig) -> RecipeOutput:
    resized = resize_short_side(rgb, cfg.size)
    y = int(rng.integers(0, resized.shape[0] - cfg.size + 1))
    x = int(rng.integers(0, resized.shape[1] - cfg.size + 1))
    crop = np.ascontiguousarray(resized[y : y + cfg.size, x : x + cfg.size])
    params = {"crop": [y, x], "resized": list(resized.shape[:2])}
    return RecipeOutput(fields={"rgb.jpg": encode_jpeg(crop, cfg.jpeg_quality)}, params=params)


def preview_row(sample: dict) -> np.ndarray:
    """The stored image and the three rotations the trainer adds, each with its class."""
    image = sample["rgb.jpg"]
    return hstack([label(np.rot90(image, k), f"{angle} deg = class {k}") for k, angle in enumerate(ANGLES)])


RECIPE = Recipe(
    name="rotation",
    config_type=RotationRecipeConfig,
    source="images",
    fields=("rgb.jpg",),
    make_sample=make_sample,
    preview_row=preview_row,
    draft_side=lambda cfg: cfg.size,
)
