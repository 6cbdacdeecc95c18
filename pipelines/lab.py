"""CIE Lab in the contract's convention (OpenCV 8-bit) and exact nearest-bin lookup for ab.

With 8-bit Lab, a and b are integers in [-128, 127], so a 256 x 256 table of the nearest of the 313
bin centres quantizes exactly, at memory speed (a brute-force nearest centre is ~100x slower).
"""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

from mtssl.contract import ab_bins


def rgb_to_lab8(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> uint8 Lab: L scaled to 0-255, a and b offset by 128."""
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2Lab)


def lab8_to_rgb(lab8: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(lab8, cv2.COLOR_Lab2RGB)


def ab_of(lab8: np.ndarray) -> np.ndarray:
    """Real-valued (signed) ab of an 8-bit Lab image, as int8 (H, W, 2)."""
    return (lab8[..., 1:].astype(np.int16) - 128).astype(np.int8)


def max_abs_ab(lab8: np.ndarray) -> int:
    """The largest |a| or |b| of an 8-bit Lab image (``abs(ab_of(lab8)).max()``, from each channel's
    extremes: a tenth of the cost of converting the image to signed ab first)."""
    extremes = [cv2.minMaxLoc(cv2.extractChannel(lab8, c))[:2] for c in (1, 2)]
    return int(max(max(128 - low, high - 128) for low, high in extremes))


@lru_cache(maxsize=1)
def nearest_bin_table() -> np.ndarray:
    """(256, 256) uint16: entry [a + 128, b + 128] is the index of the nearest ab bin centre.

    Squared distances are expanded as |g|^2 - 2 g.c + |c|^2; with integer inputs every term is exact
    in float64, so ties resolve exactly as a brute-force argmin would (lowest index).
    """
    centres = ab_bins().astype(np.float64)
    values = np.arange(-128, 128, dtype=np.float64)
    table = np.empty((256, 256), np.uint16)
    for row, a in enumerate(values):  # one a value at a time keeps the temporaries small
        grid = np.stack([np.full(256, a), values], axis=1)
        dist = (grid**2).sum(1)[:, None] - 2 * grid @ centres.T + (centres**2).sum(1)[None, :]
        table[row] = dist.argmin(axis=1)
    return table


def quantize_ab(ab: np.ndarray) -> np.ndarray:
    """Nearest-bin indices (uint16, same spatial shape) of int8 ab values."""
    offset = ab.astype(np.int16) + 128
    return nearest_bin_table()[offset[..., 0], offset[..., 1]]


def bins_to_ab(bins: np.ndarray) -> np.ndarray:
    """Bin indices -> their centres' ab values (int16, shape + (2,))."""
    return ab_bins()[bins.astype(np.int64)].astype(np.int16)


def render_lab(l8: np.ndarray, ab: np.ndarray) -> np.ndarray:
    """Render an 8-bit L image and an ab map (any resolution, upsampled) back to RGB."""
    h, w = l8.shape
    ab_full = cv2.resize(ab.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    lab8 = np.empty((h, w, 3), np.uint8)
    lab8[..., 0] = l8
    lab8[..., 1:] = np.clip(np.rint(ab_full + 128), 0, 255).astype(np.uint8)
    return lab8_to_rgb(lab8)
