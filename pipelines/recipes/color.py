"""Colorization (Zhang, Isola & Efros, ECCV 2016): L input, ab target as indices into the 313 bins.

The target sits at a quarter of the input resolution (Zhang predicts at 1/4). Each set accumulates
its empirical ab prior (bin histogram over colour images) for class rebalancing at training time.

Stored per sample: ``l.jpg`` the L input (S x S), ``bins.png`` a 16-bit PNG of indices into the 313 ab
bins at S/4 x S/4, ``ab.npy`` the int8 (S/4, S/4, 2) ab target those bins quantize (for soft encoding), and
``json`` (``grayscale`` flag and recipe parameters).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from mtssl.contract import COLOR_TARGET_STRIDE, NUM_AB_BINS, encode_jpeg, encode_npy, encode_png
from pipelines.drawing import hstack, label
from pipelines.lab import ab_of, bins_to_ab, max_abs_ab, quantize_ab, render_lab, rgb_to_lab8
from pipelines.recipes.base import Recipe, RecipeOutput
from pipelines.resize import resize_short_side


@dataclass(frozen=True)
class ColorRecipeConfig:
    size: int = 256  # side of the square input, in px, a multiple of 4; the colour target is a quarter of it
    #   (Zhang et al.: 256; the trainer takes its own random crops)
    gray_threshold: int = 5  # images whose colour (|a| and |b| in Lab) never exceeds this are marked
    #   grayscale and left out of the set's colour statistics
    min_source_side: int = 128  # reject images whose shorter side is smaller than this, in px (no image is
    #   enlarged more than 2 times)
    jpeg_quality: int = 95  # JPEG quality of the stored L input, 1-100

    def __post_init__(self) -> None:
        if self.size % COLOR_TARGET_STRIDE:
            raise ValueError(
                f"size must be a multiple of {COLOR_TARGET_STRIDE} (the target is at a quarter), got {self.size}"
            )


def make_sample(rgb: np.ndarray, rng: np.random.Generator, cfg: ColorRecipeConfig) -> RecipeOutput:
    resized = resize_short_side(rgb, cfg.size)
    y = int(rng.integers(0, resized.shape[0] - cfg.size + 1))
    x = int(rng.integers(0, resized.shape[1] - cfg.size + 1))
    lab = rgb_to_lab8(np.ascontiguousarray(resized[y : y + cfg.size, x : x + cfg.size]))
    max_ab = max_abs_ab(lab)
    grayscale = max_ab <= cfg.gray_threshold
    side = cfg.size // COLOR_TARGET_STRIDE
    ab_small = ab_of(cv2.resize(lab, (side, side), interpolation=cv2.INTER_AREA))
    bins = quantize_ab(ab_small)
    counts = np.zeros(NUM_AB_BINS, np.int64) if grayscale else np.bincount(bins.ravel(), minlength=NUM_AB_BINS)
    params = {"crop": [y, x], "resized": list(resized.shape[:2]), "grayscale": grayscale, "max_ab": max_ab}
    fields = {
        "l.jpg": encode_jpeg(lab[..., 0], cfg.jpeg_quality),
        "bins.png": encode_png(bins, rle=True),
        "ab.npy": encode_npy(ab_small),
    }
    return RecipeOutput(fields=fields, params=params, counts={"ab_counts": counts.astype(np.int64)})


def summarize(counts: dict[str, np.ndarray]) -> dict[str, list]:
    """The set's empirical ab prior (probabilities over the 313 bins) from the summed histogram."""
    total = counts.get("ab_counts", np.zeros(NUM_AB_BINS, np.int64))
    prior = total / total.sum() if total.sum() > 0 else np.full(NUM_AB_BINS, 1.0 / NUM_AB_BINS)
    return {"ab_counts": total.astype(int).tolist(), "ab_prior": [round(float(p), 10) for p in prior]}


def preview_row(sample: dict) -> np.ndarray:
    """L input, the quantized ab target rendered back to colour with that L, and the stored ab."""
    l8 = sample["l.jpg"]
    target = render_lab(l8, bins_to_ab(sample["bins.png"]))
    raw = render_lab(l8, sample["ab.npy"].astype(np.int16))
    flag = "grayscale" if sample["json"]["grayscale"] else "colour"
    return hstack(
        [label(np.repeat(l8[..., None], 3, 2), f"L ({flag})"), label(target, "L + ab bins"), label(raw, "L + ab")]
    )


RECIPE = Recipe(
    name="color",
    config_type=ColorRecipeConfig,
    source="images",
    fields=("l.jpg", "bins.png", "ab.npy"),
    make_sample=make_sample,
    preview_row=preview_row,
    draft_side=lambda cfg: cfg.size,
    summarize=summarize,
)
