"""``score-motion --sheet``: per sequence, a few frames with the ground truth beside the method's mask."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from mtssl.contract import write_bytes_atomic

CELL = (240, 135)  # width, height of one picture
GT_COLOUR, MASK_COLOUR = (40, 220, 40), (230, 40, 40)


def overlay(rgb: np.ndarray, mask: np.ndarray, colour: tuple[int, int, int]) -> np.ndarray:
    """``rgb`` with ``mask``'s pixels tinted half-way to ``colour`` and its outline drawn."""
    out = rgb.copy()
    on = mask > 0
    out[on] = (0.5 * out[on] + 0.5 * np.array(colour)).astype(np.uint8)
    contours, _ = cv2.findContours(on.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(out, contours, -1, colour, 2)
    return out


def _label(image: np.ndarray, text: str) -> np.ndarray:
    cv2.putText(image, text, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(image, text, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (255, 255, 255), 1, cv2.LINE_AA)
    return image


def sheet_image(pictures: dict[str, list]) -> np.ndarray:
    """One row per sequence: (ground truth | mask) pairs of its frames, labelled with the IoU."""
    width = max(len(items) for items in pictures.values()) * 2 * CELL[0]
    rows = []
    for name, items in sorted(pictures.items()):
        cells = []
        for k, (rgb, truth, mask, score) in enumerate(items):
            gt = _label(cv2.resize(overlay(rgb, truth, GT_COLOUR), CELL), f"{name} #{k + 1}: ground truth")
            ours = _label(cv2.resize(overlay(rgb, mask, MASK_COLOUR), CELL), f"mask, IoU {score:.2f}")
            cells += [gt, ours]
        row = np.hstack(cells)
        rows.append(np.pad(row, ((0, 4), (0, width - row.shape[1]), (0, 0)), constant_values=255))
    return np.vstack(rows)


def write_sheet(pictures: dict[str, list], path: Path) -> None:
    if not pictures:
        raise ValueError("no scored sequence to draw")
    ok, png = cv2.imencode(".png", sheet_image(pictures)[..., ::-1])
    if not ok:
        raise RuntimeError("PNG encoding failed")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(Path(path), png.tobytes())
