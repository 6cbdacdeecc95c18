"""The jigsaw recipe: nine tiles per image, each at a random place inside its cell of a square crop."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from mtssl.contract import decode_jpeg, decode_sample, untile
from pipelines.build import build
from pipelines.inspect import iter_tar_samples
from pipelines.preview import contact_sheet
from pipelines.recipes.jigsaw import GRID, RECIPE, JigsawRecipeConfig, make_sample
from pipelines.resize import resize_short_side

SMALL = JigsawRecipeConfig(short_side=128, size=120, tile=32, min_source_side=64)  # 40-px cells: 8 px of jitter


def texture(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Smooth random colour blobs: every place looks different, and a shift of a few pixels shows."""
    coarse = np.random.default_rng(seed).integers(0, 256, (height // 8, width // 8, 3), dtype=np.uint8)
    return cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)


def test_each_tile_is_a_crop_of_its_cell_of_the_resized_image():
    source = texture(160, 224)
    out = make_sample(source, np.random.default_rng(3), SMALL)
    resized = resize_short_side(source, SMALL.short_side)
    mosaic = decode_jpeg(out.fields["tiles.jpg"])
    assert mosaic.shape == (3 * 32, 3 * 32, 3) and out.params["resized"] == list(resized.shape[:2])
    y0, x0 = out.params["crop"]
    assert 0 <= y0 <= 128 - 120 and 0 <= x0 <= resized.shape[1] - 120
    positions = np.array(out.params["positions"])
    cells = np.stack(np.divmod(np.arange(GRID * GRID), GRID), axis=1) * SMALL.cell + [y0, x0]
    offsets = positions - cells
    assert offsets.min() >= 0 and offsets.max() <= SMALL.cell - SMALL.tile  # inside its cell: the jitter range
    assert len({tuple(o) for o in offsets}) > 1  # jittered, not a regular grid
    for tile, (y, x) in zip(untile(mosaic, GRID, GRID), positions, strict=True):
        error = np.abs(tile.astype(int) - resized[y : y + 32, x : x + 32]).mean()
        dy = 1 if y + 33 <= resized.shape[0] else -1  # one pixel off, inside the image
        shifted = np.abs(tile.astype(int) - resized[y + dy : y + dy + 32, x : x + 32]).mean()
        assert error < 6 and shifted > 2 * error  # the stored place, to the pixel, up to the JPEG's error (~5)


def test_a_sample_is_the_same_for_the_same_seed_and_not_for_another():
    source = texture(160, 224)
    first, again = (make_sample(source, np.random.default_rng(7), SMALL) for _ in range(2))
    other = make_sample(source, np.random.default_rng(8), SMALL)
    assert first.fields == again.fields and first.params == again.params
    assert other.params["positions"] != first.params["positions"]


def test_the_defaults_are_the_papers_and_a_tile_that_cannot_fit_is_refused():
    cfg = JigsawRecipeConfig()
    assert (cfg.size, cfg.cell, cfg.tile) == (225, 75, 64)
    with pytest.raises(ValueError, match="multiple of 16"):
        JigsawRecipeConfig(tile=60)
    with pytest.raises(ValueError, match="do not fit"):
        JigsawRecipeConfig(size=180, tile=64)
    with pytest.raises(ValueError, match="larger than the resized"):
        JigsawRecipeConfig(short_side=200, size=225)


def test_a_build_stores_the_tiles_as_one_field_that_decodes(sample_images, tmp_path):
    report = build("jigsaw", sample_images, tmp_path / "jigsaw", SMALL, workers=0, samples_per_shard=20,
                   show_progress=False)  # fmt: skip
    totals = report.manifest["totals"]
    assert totals["samples"] + totals["rejected"] == 45 and totals["samples"] >= 40
    first = next(iter_tar_samples(tmp_path / "jigsaw" / "jigsaw-000000.tar"))
    assert set(first) - {"__key__"} == {"tiles.jpg", "json"}  # the tiles once, as one member
    sample = decode_sample(first, (*RECIPE.fields, "json"))
    assert sample["tiles.jpg"].shape == (96, 96, 3) and sample["tiles.jpg"].dtype == np.uint8
    assert len(sample["json"]["positions"]) == 9
    sheet = contact_sheet(tmp_path / "jigsaw", count=2)
    assert sheet.shape[1] >= 2 * 3 * 32  # the tiles in their cells and one shuffle of them side by side
