"""The rotation recipe: one upright square crop per image, a side the JPEG block grid maps onto itself."""

from __future__ import annotations

import numpy as np
import pytest

from mtssl.contract import decode_jpeg, decode_sample
from pipelines.build import build
from pipelines.inspect import iter_tar_samples
from pipelines.preview import contact_sheet
from pipelines.recipes.rotation import RECIPE, RotationRecipeConfig, make_sample


def gradient(height: int, width: int) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    return np.dstack([y * 255 // height, x * 255 // width, np.full_like(y, 128)]).astype(np.uint8)


def test_a_sample_is_an_upright_square_crop_of_the_resized_image():
    cfg = RotationRecipeConfig(size=64)
    out = make_sample(gradient(100, 160), np.random.default_rng(0), cfg)
    image = decode_jpeg(out.fields["rgb.jpg"])
    assert image.shape == (64, 64, 3) and out.params["resized"] == [64, 102]
    y, x = out.params["crop"]
    assert y == 0 and 0 <= x <= 102 - 64
    # upright: the red channel still grows downwards, the green one to the right
    assert image[-4:, :, 0].mean() > image[:4, :, 0].mean() + 100
    assert abs(image[:, :4, 1].mean() + 255 * 64 / 102 - image[:, -4:, 1].mean()) < 40


def test_a_side_off_the_jpeg_block_grid_is_refused():
    with pytest.raises(ValueError, match="multiple of 16"):
        RotationRecipeConfig(size=100)


def test_a_build_writes_every_input_and_previews_all_four_rotations(sample_images, tmp_path):
    report = build("rotation", sample_images, tmp_path / "rotation", RotationRecipeConfig(size=64), workers=0,
                   samples_per_shard=20, show_progress=False)  # fmt: skip
    totals = report.manifest["totals"]
    assert totals["samples"] + totals["rejected"] == 45 and totals["samples"] >= 40
    first = next(iter_tar_samples(tmp_path / "rotation" / "rotation-000000.tar"))
    sample = decode_sample(first, (*RECIPE.fields, "json"))
    assert sample["rgb.jpg"].shape == (64, 64, 3) and "crop" in sample["json"]
    sheet = contact_sheet(tmp_path / "rotation", count=2)
    assert sheet.shape[1] >= 4 * 64  # the stored image and its three rotations side by side
