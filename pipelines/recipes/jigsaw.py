"""Jigsaw puzzles (Noroozi & Favaro, ECCV 2016, "Unsupervised Learning of Visual Representations by Solving
Jigsaw Puzzles"): nine tiles of a 3x3 grid per image.

The image's shorter side is resized to ``short_side``, a random ``size`` x ``size`` square of it is cut into
3 x 3 cells, and a ``tile`` x ``tile`` tile is taken at a random place inside each cell (Noroozi & Favaro:
a 225-px crop, 75-px cells, 64-px tiles). The random place is the jitter: neighbouring tiles are
separated by a gap of random width, so continuing edges and textures across tile borders do not tell
the arrangement.

The tiles are stored once, in their true order; the trainer draws the permutation per sample and step on
the device (``mtssl/tasks/jigsaw.py``), so one stored sample serves every permutation of its tiles.

Stored per sample: ``tiles.jpg``, the nine tiles in reading order tiled into one (3T x 3T) image (tile 4 is
the centre of the grid), and ``json`` (``resized``, ``crop`` and the tiles' top-left corners
``positions`` in the resized image).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from mtssl.contract import encode_jpeg, tile, untile
from pipelines.drawing import hstack, label, vstack
from pipelines.recipes.base import Recipe, RecipeOutput
from pipelines.resize import resize_short_side

GRID = 3  # src: Noroozi & Favaro 2016, a 3x3 puzzle of nine tiles
PREVIEW_SEED = 0  # ours: the fixed shuffle the contact sheet shows beside the tiles


@dataclass(frozen=True)
class JigsawRecipeConfig:
    # What the trainer may rely on (the manifest's ``declared`` block): declared name -> config field.
    DECLARED: ClassVar[dict[str, str]] = {"tile_side": "tile"}

    short_side: int = 256  # the image's shorter side is resized to this before the crop, in px (as the
    #   rotation task's 256)
    size: int = 225  # side of the square crop cut into 3 x 3 cells, in px (Noroozi & Favaro: 225, cells of 75)
    tile: int = 64  # side of the tile taken at a random place inside each cell, in px (Noroozi & Favaro: 64)
    min_source_side: int = 128  # reject images whose shorter side is smaller than this, in px (no image is
    #   enlarged more than 2 times)
    jpeg_quality: int = 95  # JPEG quality of the stored tiles, 1-100

    def __post_init__(self) -> None:
        if self.tile % 16:
            raise ValueError(f"jigsaw tile must be a multiple of 16 (JPEG blocks), got {self.tile}")
        if GRID * self.tile > self.size:
            raise ValueError(
                f"jigsaw tiles of {self.tile} px do not fit the {self.size // GRID}-px cells of size {self.size}"
            )
        if self.size > self.short_side:
            raise ValueError(f"jigsaw size {self.size} is larger than the resized shorter side {self.short_side}")

    @property
    def cell(self) -> int:
        """Side of one grid cell."""
        return self.size // GRID


def tile_positions(rng: np.random.Generator, cfg: JigsawRecipeConfig) -> np.ndarray:
    """(9, 2) top-left corners (y, x) of the tiles inside the crop, reading order: each at a random place
    inside its cell."""
    rows, cols = np.divmod(np.arange(GRID * GRID), GRID)
    jitter = rng.integers(0, cfg.cell - cfg.tile + 1, size=(GRID * GRID, 2))
    return np.stack([rows * cfg.cell, cols * cfg.cell], axis=1) + jitter


def make_sample(rgb: np.ndarray, rng: np.random.Generator, cfg: JigsawRecipeConfig) -> RecipeOutput:
    resized = resize_short_side(rgb, cfg.short_side)
    y0 = int(rng.integers(0, resized.shape[0] - cfg.size + 1))
    x0 = int(rng.integers(0, resized.shape[1] - cfg.size + 1))
    positions = tile_positions(rng, cfg) + np.array([y0, x0])
    tiles = [resized[y : y + cfg.tile, x : x + cfg.tile] for y, x in positions]
    params = {"resized": list(resized.shape[:2]), "crop": [y0, x0], "positions": positions.tolist()}
    return RecipeOutput(fields={"tiles.jpg": encode_jpeg(tile(tiles, GRID), cfg.jpeg_quality)}, params=params)


def grid_of(tiles: list[np.ndarray]) -> np.ndarray:
    """Nine tiles drawn as a 3 x 3 grid with gaps."""
    return vstack([hstack(tiles[r * GRID : (r + 1) * GRID]) for r in range(GRID)])


def preview_row(sample: dict) -> np.ndarray:
    """The tiles in their cells, each with its number; beside them one shuffle of them, as the trainer feeds
    it (each tile labelled with the cell it came from)."""
    tiles = list(untile(sample["tiles.jpg"], GRID, GRID))
    order = np.random.default_rng(PREVIEW_SEED).permutation(GRID * GRID)
    numbered = [label(t, str(i)) for i, t in enumerate(tiles)]
    return hstack([grid_of(numbered), grid_of([numbered[i] for i in order])])


RECIPE = Recipe(
    name="jigsaw",
    config_type=JigsawRecipeConfig,
    source="images",
    fields=("tiles.jpg",),
    make_sample=make_sample,
    preview_row=preview_row,
    draft_side=lambda cfg: cfg.short_side,
)
