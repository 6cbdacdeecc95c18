"""Drawing helpers of the contact sheets: labelled cells, padded rows and columns (RGB uint8 images)."""

from __future__ import annotations

import cv2
import numpy as np

PAD = 6
WHITE = (255, 255, 255)


def label(image: np.ndarray, text: str, origin=(4, 16), scale: float = 0.45) -> np.ndarray:
    image = np.ascontiguousarray(image)
    cv2.putText(image, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(image, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 0), 1, cv2.LINE_AA)
    return image


def hstack(images: list[np.ndarray]) -> np.ndarray:
    height = max(i.shape[0] for i in images)
    cells = []
    for image in images:
        rgb = image if image.ndim == 3 else np.repeat(image[..., None], 3, axis=2)
        cell = np.full((height, rgb.shape[1] + PAD, 3), 255, np.uint8)
        cell[: rgb.shape[0], : rgb.shape[1]] = rgb
        cells.append(cell)
    return np.concatenate(cells, axis=1)


def vstack(rows: list[np.ndarray]) -> np.ndarray:
    width = max(r.shape[1] for r in rows)
    padded = [np.pad(r, ((0, PAD), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    return np.concatenate(padded, axis=0)
