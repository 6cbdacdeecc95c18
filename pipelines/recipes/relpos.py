"""Relative position (Doersch, Gupta & Efros, ICCV 2015): a 3x3 grid of jittered patches per image.

Defaults follow the authors' deepcontext code (method.md): resize to a random total area of
150K-450K pixels, 96-px patches with a 48-px gap, each patch jittered by up to +-7 px, random grid
origin. All nine patches are stored, so the trainer can draw any of the 8 (centre, neighbour) pairs;
colour dropping, downsampling and RMS normalisation are training-time input transforms.

Stored per sample: ``rgb.jpg``, the 3x3 grid of patches tiled into one (3P x 3P) image in reading order
(patch 4 is the centre; the pair (centre, neighbour n) has label ``RELPOS_LABELS[n]``), and ``json``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from mtssl.contract import RELPOS_CENTRE, RELPOS_GRID, RELPOS_LABELS, encode_jpeg, tile, untile
from pipelines.drawing import hstack, label, vstack
from pipelines.errors import Reject
from pipelines.lab import rgb_to_lab8
from pipelines.recipes.base import Recipe, RecipeOutput
from pipelines.resize import resize


@dataclass(frozen=True)
class RelposRecipeConfig:
    # What the trainer may rely on (the manifest's ``declared`` block): declared name -> config field.
    DECLARED: ClassVar[dict[str, str]] = {"patch_side": "patch"}

    patch: int = 96  # side of each of the nine square patches, in px (Doersch et al.'s code: 96)
    gap: int = 48  # gap between neighbouring patches, in px (Doersch et al.'s code: 48)
    jitter: int = 7  # each patch moves by up to this many px either way (Doersch et al.'s code: 7)
    min_area: int = 150_000  # smallest area, in pixels, the image is resized to: a random area between this
    #   and --max-area (Doersch et al.'s code: 150,000 to 450,000)
    max_area: int = 450_000  # largest area, in pixels, the image is resized to
    min_source_side: int = 192  # reject images whose shorter side is smaller than this, in px (no image is
    #   enlarged more than about 2 times)
    jpeg_quality: int = 95  # JPEG quality of the stored patches, 1-100

    @property
    def span(self) -> int:
        """Side of the grid without jitter."""
        return RELPOS_GRID * self.patch + (RELPOS_GRID - 1) * self.gap

    @property
    def extent(self) -> int:
        """Shorter image side the grid needs, jitter included."""
        return self.span + 2 * self.jitter


def choose_scale(height: int, width: int, rng: np.random.Generator, cfg: RelposRecipeConfig) -> float:
    """Random area in [min_area, max_area], raised if needed so that the grid fits."""
    area = rng.uniform(cfg.min_area, cfg.max_area)
    scale = math.sqrt(area / (height * width))
    fit = cfg.extent / min(height, width)
    if height * width * fit * fit > cfg.max_area * 1.0001:
        raise Reject("aspect ratio too extreme", f"{width}x{height} cannot hold the grid within max_area")
    return max(scale, fit)


def grid_positions(height: int, width: int, rng: np.random.Generator, cfg: RelposRecipeConfig) -> np.ndarray:
    """(9, 2) int array of patch top-left corners (y, x), in reading order."""
    step = cfg.patch + cfg.gap
    y0 = rng.integers(cfg.jitter, height - cfg.span - cfg.jitter + 1)
    x0 = rng.integers(cfg.jitter, width - cfg.span - cfg.jitter + 1)
    rows, cols = np.divmod(np.arange(RELPOS_GRID * RELPOS_GRID), RELPOS_GRID)
    jitter = rng.integers(-cfg.jitter, cfg.jitter + 1, size=(RELPOS_GRID * RELPOS_GRID, 2))
    return np.stack([y0 + rows * step, x0 + cols * step], axis=1) + jitter


def source_box(shape: tuple[int, int], scale: float, positions: np.ndarray, patch: int) -> tuple[int, int, int, int]:
    """The source pixels (y0, x0, y1, x1) under the grid laid on the image resized by ``scale``."""
    (top, left), (bottom, right) = positions.min(axis=0), positions.max(axis=0) + patch
    y1 = min(shape[0], math.ceil(bottom / scale) + 1)
    x1 = min(shape[1], math.ceil(right / scale) + 1)
    return int(top / scale), int(left / scale), y1, x1


def make_sample(rgb: np.ndarray, rng: np.random.Generator, cfg: RelposRecipeConfig) -> RecipeOutput:
    """Lay the grid on the image resized by a random scale; resize only the source box under it.

    Resizing the box instead of the whole image costs a third as much. The box is snapped to whole
    source pixels and resized by ``scale`` on its own, so the patch corners (``positions``) are
    exact in that resized box (``box``, resized to ``box_size``), and within a pixel of the nominal
    grid on the whole resized image (``size``).
    """
    height, width = rgb.shape[:2]
    scale = choose_scale(height, width, rng, cfg)
    size = (max(cfg.extent, round(height * scale)), max(cfg.extent, round(width * scale)))
    nominal = grid_positions(size[0], size[1], rng, cfg)
    y0, x0, y1, x1 = source_box((height, width), scale, nominal, cfg.patch)
    box_size = (max(1, round((y1 - y0) * scale)), max(1, round((x1 - x0) * scale)))
    region = resize(np.ascontiguousarray(rgb[y0:y1, x0:x1]), box_size[1], box_size[0])
    limit = np.array(box_size) - cfg.patch
    positions = np.clip(nominal - np.array([round(y0 * scale), round(x0 * scale)]), 0, limit)
    patches = [region[y : y + cfg.patch, x : x + cfg.patch] for y, x in positions]
    mosaic = tile(patches, RELPOS_GRID)
    params = {
        "scale": round(scale, 6),
        "size": list(size),
        "box": [y0, x0, y1, x1],
        "box_size": list(box_size),
        "positions": positions.tolist(),
    }
    fields = {
        "rgb.jpg": encode_jpeg(mosaic, cfg.jpeg_quality),
    }
    return RecipeOutput(fields=fields, params=params)


def preview_row(sample: dict) -> np.ndarray:
    """The nine patches with gaps, each neighbour with its pair label and the centre a C; beside them, in L."""
    patches = untile(sample["rgb.jpg"], RELPOS_GRID, RELPOS_GRID)
    labelled = [label(p, "C" if i == RELPOS_CENTRE else str(RELPOS_LABELS[i])) for i, p in enumerate(patches)]
    rows = [hstack(labelled[r * RELPOS_GRID : (r + 1) * RELPOS_GRID]) for r in range(RELPOS_GRID)]
    grid = vstack(rows)
    gray_tiles = list(untile(rgb_to_lab8(sample["rgb.jpg"])[..., 0], RELPOS_GRID, RELPOS_GRID))
    gray = vstack([hstack(gray_tiles[r * 3 : r * 3 + 3]) for r in range(RELPOS_GRID)])
    return hstack([grid, gray])


RECIPE = Recipe(
    name="relpos",
    config_type=RelposRecipeConfig,
    source="images",
    fields=("rgb.jpg",),
    make_sample=make_sample,
    preview_row=preview_row,
)
