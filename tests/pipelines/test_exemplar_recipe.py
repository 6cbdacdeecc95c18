import numpy as np
import pytest

from mtssl.contract import decode_jpeg, untile
from pipelines.recipes.exemplar import ExemplarRecipeConfig, draw_view_params, jitter_colour, make_sample, warp_view

CFG = ExemplarRecipeConfig()
IDENTITY = {
    "contrast": 1.0,
    "sat_power": 1.0,
    "val_power": 1.0,
    "sat_gain": 1.0,
    "val_gain": 1.0,
    "sat_offset": 0.0,
    "val_offset": 0.0,
    "hue_shift": 0.0,
}


def test_parameters_stay_in_their_ranges():
    rng = np.random.default_rng(0)
    draws = [draw_view_params(192, 256, rng, CFG) for _ in range(2000)]
    for key, (low, high) in {
        "scale": CFG.scale_range,
        "contrast": CFG.contrast_range,
        "sat_power": CFG.power_range,
        "val_power": CFG.power_range,
        "sat_gain": CFG.gain_range,
        "val_gain": CFG.gain_range,
        "sat_offset": CFG.offset_range,
        "hue_shift": CFG.hue_range,
    }.items():
        values = np.array([d[key] for d in draws])
        assert values.min() >= low and values.max() <= high, key
        assert values.max() - values.min() > 0.8 * (high - low), f"{key} does not cover its range"
    rotations = np.array([d["rotation"] for d in draws])
    assert np.abs(rotations).max() <= CFG.max_rotation and rotations.min() < -15 and rotations.max() > 15
    for d in draws:  # the crop square (before rotation) lies inside the image
        half = d["side"] / 2
        assert half <= d["centre"][0] <= 192 - half and half <= d["centre"][1] <= 256 - half


def test_identity_view_is_the_crop():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (192, 192, 3), dtype=np.uint8)
    p = {**IDENTITY, "centre": [95.5, 95.5], "side": 96.0, "rotation": 0.0}
    crop = warp_view(image, p, 96)
    assert np.abs(crop.astype(int) - image[48:144, 48:144]).max() <= 1
    error = np.abs(jitter_colour(crop, p).astype(int) - crop)  # 8-bit HSV round trip only
    assert error.mean() < 1.5 and error.max() <= 10


def test_rotation_turns_the_content():
    image = np.zeros((192, 192, 3), np.uint8)
    image[:, 100:] = 255  # right half white
    p = {**IDENTITY, "centre": [95.5, 95.5], "side": 96.0, "rotation": 90.0}
    view = warp_view(image, p, 96)
    assert view[:40].mean() > 200 and view[-40:].mean() < 50  # a +90 degree sampling puts it on top


@pytest.mark.parametrize("key,value", [("contrast", 2.0), ("val_power", 4.0), ("hue_shift", 0.1)])
def test_photometric_changes_have_the_expected_sign(key, value):
    rng = np.random.default_rng(2)
    view = np.clip(rng.normal(128, 30, (96, 96, 3)), 0, 255).astype(np.uint8)
    view[..., 0] = np.clip(view[..., 0].astype(int) + 60, 0, 255)  # reddish, so hue and saturation are defined
    out = jitter_colour(view, {**IDENTITY, key: value})
    if key == "contrast":
        assert out.astype(float).std() > 1.5 * view.astype(float).std()
    elif key == "val_power":
        assert out.mean() < 0.6 * view.mean()
    else:
        assert not np.array_equal(out, view) and abs(out.mean() - view.mean()) < 20


def test_sample_holds_k_views_in_both_modes():
    from skimage import data

    out = make_sample(data.chelsea(), np.random.default_rng(0), CFG)
    strip = decode_jpeg(out.fields["rgb.jpg"])
    assert strip.shape == (96, 96 * CFG.views, 3)
    assert set(out.fields) == {"rgb.jpg"}
    views = untile(strip, 1, CFG.views)
    assert len(out.params["views"]) == CFG.views
    assert all(np.abs(views[0].astype(int) - v).mean() > 5 for v in views[1:])  # views differ
