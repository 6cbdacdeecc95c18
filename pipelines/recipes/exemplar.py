"""Exemplar (Dosovitskiy et al., NIPS 2014): K strongly augmented views of each image.

The ranges follow Dosovitskiy et al. section 3: scale 0.7-1.4, rotation +-20 degrees, translation
anywhere the crop fits; S and V raised to a power in [0.25, 4], multiplied by [0.7, 1.4] and offset by
[-0.1, 0.1]; hue offset [-0.1, 0.1] of the circle. Their PCA "contrast 1" is replaced by scaling each
view's deviations from its mean by [0.5, 2]. Every view's parameters are stored in the sample.

Stored per sample: ``rgb.jpg``, the K views tiled left to right into one (V x K*V) image, and ``json``
with the augmentation parameters of every view.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import cv2
import numpy as np

from mtssl.contract import encode_jpeg, tile, untile
from pipelines.drawing import hstack, label, vstack
from pipelines.lab import rgb_to_lab8
from pipelines.recipes.base import Recipe, RecipeOutput
from pipelines.resize import resize


@dataclass(frozen=True)
class ExemplarRecipeConfig:
    # What the trainer may rely on (the manifest's ``declared`` block): declared name -> config field.
    DECLARED: ClassVar[dict[str, str]] = {"view_side": "view_size", "views": "views"}

    views: int = 4  # augmented views stored per image, at least 2 (the multi-task paper draws two per triplet)
    view_size: int = 96  # side of each view, in px (the relpos patch side, so the trunk sees one input scale)
    base_crop: float = 0.5  # a view at scale 1 covers this share of the image's shorter side (0.5: half)
    scale_range: tuple[float, float] = (0.7, 1.4)  # lowest and highest scale of a view (Dosovitskiy et al.)
    max_rotation: float = 20.0  # largest rotation of a view, in degrees either way (Dosovitskiy et al.)
    contrast_range: tuple[float, float] = (0.5, 2.0)  # lowest and highest factor on a view's deviations from
    #   its mean colour (in place of Dosovitskiy et al.'s contrast along the colours' principal components)
    power_range: tuple[float, float] = (0.25, 4.0)  # lowest and highest power saturation and value are raised
    #   to (Dosovitskiy et al.)
    gain_range: tuple[float, float] = (0.7, 1.4)  # lowest and highest factor on saturation and value
    #   (Dosovitskiy et al.)
    offset_range: tuple[float, float] = (-0.1, 0.1)  # lowest and highest offset added to saturation and value
    #   (Dosovitskiy et al.)
    hue_range: tuple[float, float] = (-0.1, 0.1)  # lowest and highest hue shift, as a share of the colour
    #   circle (Dosovitskiy et al.)
    min_source_side: int = 64  # reject images whose shorter side is smaller than this, in px
    jpeg_quality: int = 95  # JPEG quality of the stored views, 1-100

    def __post_init__(self) -> None:
        if self.views < 2:
            raise ValueError(f"views must be at least 2 (the triplet loss needs anchor and positive), got {self.views}")

    @property
    def working_side(self) -> int:
        """Shorter side the source is resized to, so a scale-1 view is sampled ~1:1 (no aliasing)."""
        return math.ceil(self.view_size / self.base_crop)


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(math.exp(rng.uniform(math.log(low), math.log(high))))


def draw_view_params(height: int, width: int, rng: np.random.Generator, cfg: ExemplarRecipeConfig) -> dict:
    scale = float(rng.uniform(*cfg.scale_range))
    side = min(cfg.view_size * scale, height, width)
    half = side / 2
    return {
        "centre": [float(rng.uniform(half, height - half)), float(rng.uniform(half, width - half))],
        "side": float(side),
        "scale": scale,
        "rotation": float(rng.uniform(-cfg.max_rotation, cfg.max_rotation)),
        "contrast": _log_uniform(rng, *cfg.contrast_range),
        "sat_power": _log_uniform(rng, *cfg.power_range),
        "val_power": _log_uniform(rng, *cfg.power_range),
        "sat_gain": float(rng.uniform(*cfg.gain_range)),
        "val_gain": float(rng.uniform(*cfg.gain_range)),
        "sat_offset": float(rng.uniform(*cfg.offset_range)),
        "val_offset": float(rng.uniform(*cfg.offset_range)),
        "hue_shift": float(rng.uniform(*cfg.hue_range)),
    }


def warp_view(image: np.ndarray, p: dict, size: int) -> np.ndarray:
    """Sample the rotated square crop described by ``p`` into a (size, size) view."""
    theta = math.radians(p["rotation"])
    step = p["side"] / size
    rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]]) * step
    centre_xy = np.array([p["centre"][1], p["centre"][0]])
    offset = centre_xy - rot @ np.full(2, (size - 1) / 2)
    inverse = np.hstack([rot, offset[:, None]])
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    return cv2.warpAffine(image, inverse, (size, size), flags=flags, borderMode=cv2.BORDER_REFLECT_101)


def jitter_colour(view: np.ndarray, p: dict) -> np.ndarray:
    """Contrast around the view mean, then S/V power-gain-offset and hue shift, all in 8 bits.

    Contrast is one affine colour transform; the HSV changes are one lookup table per channel on 8-bit
    HSV (hue over the full circle in 256 steps), three times faster than float HSV.
    """
    mean = np.array(cv2.mean(view)[:3])
    contrast = np.hstack([np.eye(3) * p["contrast"], ((1 - p["contrast"]) * mean)[:, None]])
    hsv = cv2.cvtColor(cv2.transform(view, contrast), cv2.COLOR_RGB2HSV_FULL)
    return cv2.cvtColor(cv2.LUT(hsv, hsv_table(p)), cv2.COLOR_HSV2RGB_FULL)


def hsv_table(p: dict) -> np.ndarray:
    """(1, 256, 3) uint8 lookup: hue rotated, S and V raised to a power, scaled and offset, clipped."""
    levels = np.arange(256, dtype=np.float64)
    hue = np.mod(levels + round(256 * p["hue_shift"]), 256)
    channels = [hue]
    for key in ("sat", "val"):
        adjusted = np.power(levels / 255.0, p[f"{key}_power"]) * p[f"{key}_gain"] + p[f"{key}_offset"]
        channels.append(np.clip(adjusted, 0.0, 1.0) * 255.0)
    return np.rint(np.stack(channels, axis=1)).astype(np.uint8)[None]


def make_sample(rgb: np.ndarray, rng: np.random.Generator, cfg: ExemplarRecipeConfig) -> RecipeOutput:
    height, width = rgb.shape[:2]
    factor = cfg.working_side / min(height, width)
    work_size = (max(1, round(width * factor)), max(1, round(height * factor)))
    work = resize(rgb, *work_size)
    params = [draw_view_params(work.shape[0], work.shape[1], rng, cfg) for _ in range(cfg.views)]
    views = [jitter_colour(warp_view(work, p, cfg.view_size), p) for p in params]
    strip = tile(views, cfg.views)
    meta = {"working_size": list(work.shape[:2]), "views": params}
    fields = {
        "rgb.jpg": encode_jpeg(strip, cfg.jpeg_quality),
    }
    return RecipeOutput(fields=fields, params=meta)


def preview_row(sample: dict) -> np.ndarray:
    views = int(sample["rgb.jpg"].shape[1] // sample["rgb.jpg"].shape[0])
    rgb = [
        label(v, f"{p['rotation']:+.0f}d {p['scale']:.1f}x", scale=0.35)
        for v, p in zip(untile(sample["rgb.jpg"], 1, views), sample["json"]["views"], strict=True)
    ]
    return vstack([hstack(rgb), hstack(list(untile(rgb_to_lab8(sample["rgb.jpg"])[..., 0], 1, views)))])


RECIPE = Recipe(
    name="exemplar",
    config_type=ExemplarRecipeConfig,
    source="images",
    fields=("rgb.jpg",),
    make_sample=make_sample,
    preview_row=preview_row,
    draft_side=lambda cfg: cfg.working_side,
)
