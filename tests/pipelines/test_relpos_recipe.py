import cv2
import numpy as np
import pytest

from mtssl.contract import RELPOS_CENTRE, RELPOS_LABELS, decode_jpeg, untile
from pipelines.errors import Reject
from pipelines.recipes.relpos import RelposRecipeConfig, choose_scale, grid_positions, make_sample
from pipelines.resize import resize

CFG = RelposRecipeConfig()


def textured(height: int, width: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return cv2.resize(rng.integers(0, 256, (height // 8, width // 8, 3), dtype=np.uint8), (width, height))


def test_each_label_names_where_the_neighbour_lies_in_the_stored_grid():
    """Label order is the direction of the neighbour from the centre, read like text: up-left first."""
    pos = grid_positions(500, 640, np.random.default_rng(0), CFG)
    centre = pos[RELPOS_CENTRE]
    step = CFG.patch + CFG.gap  # jitter aside, neighbours lie one step away
    direction = {n: tuple(int(v) for v in np.rint((pos[n] - centre) / step)) for n in RELPOS_LABELS}
    by_label = [direction[n] for n in sorted(RELPOS_LABELS, key=RELPOS_LABELS.get)]
    assert by_label == [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)]


@pytest.mark.parametrize("seed", range(20))
def test_grid_geometry_in_reading_order(seed):
    rng = np.random.default_rng(seed)
    pos = grid_positions(500, 640, rng, CFG)
    step = CFG.patch + CFG.gap
    assert pos.shape == (9, 2)
    base = np.array([[r * step, c * step] for r in range(3) for c in range(3)])
    jitter = (pos - base) - (pos - base)[4]  # relative to the centre's offset
    assert np.all(np.abs(jitter) <= 2 * CFG.jitter)
    # rows go down, columns go right, in reading order
    assert np.all(pos[3:6, 0] > pos[0:3, 0]) and np.all(pos[6:9, 0] > pos[3:6, 0])
    assert np.all(pos[1::3, 1] > pos[0::3, 1]) and np.all(pos[2::3, 1] > pos[1::3, 1])
    # every patch lies inside the image and patches never overlap (gap 48 > 2 * jitter)
    assert pos.min() >= 0 and np.all(pos[:, 0] + CFG.patch <= 500) and np.all(pos[:, 1] + CFG.patch <= 640)
    gaps = np.diff(pos.reshape(3, 3, 2)[:, :, 1], axis=1) - CFG.patch
    assert gaps.min() >= CFG.gap - 2 * CFG.jitter


@pytest.mark.parametrize("shape", [(375, 500), (480, 640), (1200, 1600), (300, 300)])
def test_resize_area_within_range_or_raised_to_fit(shape):
    for seed in range(30):
        scale = choose_scale(*shape, np.random.default_rng(seed), CFG)
        area = shape[0] * shape[1] * scale * scale
        assert area <= CFG.max_area * 1.001
        assert min(shape) * scale >= CFG.extent - 1e-6
        assert area >= CFG.min_area * 0.999 or np.isclose(min(shape) * scale, CFG.extent)


def test_extreme_aspect_is_rejected():
    with pytest.raises(Reject, match="aspect"):
        choose_scale(200, 2000, np.random.default_rng(0), CFG)


@pytest.mark.parametrize("shape", [(400, 520), (375, 500), (900, 1200), (1600, 1400)])
def test_patches_are_crops_of_the_resized_source_box(shape):
    from skimage import data

    image = cv2.resize(data.astronaut(), (shape[1], shape[0]))  # natural colour: JPEG's 4:2:0 error stays small
    out = make_sample(image, np.random.default_rng(3), CFG)
    p = out.params
    y0, x0, y1, x1 = p["box"]
    box = resize(image[y0:y1, x0:x1], p["box_size"][1], p["box_size"][0])
    assert abs(p["box_size"][0] / (y1 - y0) - p["scale"]) < 0.01  # the box is resized by the drawn scale
    patches = untile(decode_jpeg(out.fields["rgb.jpg"]), 3, 3)
    assert patches.shape == (9, 96, 96, 3)
    for patch, (y, x) in zip(patches, p["positions"], strict=True):
        expected = box[y : y + 96, x : x + 96].astype(int)
        assert np.abs(patch.astype(int) - expected).mean() < 4  # JPEG q95 error only
    step = np.diff(np.array(p["positions"]).reshape(3, 3, 2)[1, :, 1])  # centre row, left to right
    assert np.all(np.abs(step - (CFG.patch + CFG.gap)) <= 2 * CFG.jitter)
    assert set(out.fields) == {"rgb.jpg"}  # L for harmonized mode is computed on the device


def test_same_rng_same_bytes():
    image = textured(450, 600)
    a = make_sample(image, np.random.default_rng(7), CFG)
    b = make_sample(image, np.random.default_rng(7), CFG)
    assert a.fields == b.fields
