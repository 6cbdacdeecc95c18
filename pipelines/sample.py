"""The embedded sample: an ImageNet-layout tree cut from the real photographs scikit-image ships.

Each photo is a class folder; each image in it is a different random crop (scale, aspect, flip) of
that photo, resized to a typical ImageNet size, so a few hundred images come from ~15 photos with
no download. Grayscale photos stay grayscale JPEGs (the colour task flags them).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from mtssl.contract import write_bytes_atomic


def _photos() -> dict[str, Callable[[], np.ndarray]]:
    from skimage import data

    return {
        "astronaut": data.astronaut,
        "chelsea": data.chelsea,
        "coffee": data.coffee,
        "hubble": data.hubble_deep_field,
        "immunohistochemistry": data.immunohistochemistry,
        "retina": data.retina,
        "rocket": data.rocket,
        "motorcycle": lambda: data.stereo_motorcycle()[0],
        "colorwheel": data.colorwheel,
        "camera": data.camera,
        "brick": data.brick,
        "coins": data.coins,
        "grass": data.grass,
        "gravel": data.gravel,
        "moon": data.moon,
    }


def random_view(photo: np.ndarray, rng: np.random.Generator, short_side: tuple[int, int]) -> np.ndarray:
    """A random crop (55-100% of the shorter side, aspect 3:4 to 4:3, maybe mirrored), resized."""
    height, width = photo.shape[:2]
    aspect = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
    side = rng.uniform(0.55, 1.0) * min(height, width)
    ch, cw = min(height, round(side / math.sqrt(aspect))), min(width, round(side * math.sqrt(aspect)))
    y, x = rng.integers(0, height - ch + 1), rng.integers(0, width - cw + 1)
    crop = photo[y : y + ch, x : x + cw]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    target = rng.integers(short_side[0], short_side[1] + 1) / min(ch, cw)
    size = (max(1, round(cw * target)), max(1, round(ch * target)))
    interp = cv2.INTER_AREA if target < 1 else cv2.INTER_CUBIC
    return cv2.resize(np.ascontiguousarray(crop), size, interpolation=interp)


def write_image_sample(
    out: Path, per_class: int = 24, seed: int = 0, short_side: tuple[int, int] = (256, 480)
) -> list[Path]:
    """Write ``out/<photo>/<photo>_NNN.jpg``; returns the written paths (sorted)."""
    written = []
    for class_index, (name, load) in enumerate(sorted(_photos().items())):
        photo = load()
        rng = np.random.default_rng([seed, class_index])
        folder = Path(out) / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            view = random_view(photo, rng, short_side)
            bgr = view[..., ::-1] if view.ndim == 3 else view
            ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(bgr), [cv2.IMWRITE_JPEG_QUALITY, 90])
            assert ok
            path = folder / f"{name}_{i:03d}.jpg"
            write_bytes_atomic(path, buf.tobytes())
            written.append(path)
    return sorted(written)
