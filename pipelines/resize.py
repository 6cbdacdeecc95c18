"""Resizing, shared by the recipes and the video decoder.

``INTER_AREA`` is the right filter for strong downscaling but OpenCV's slow path at non-integer
scales; between half and full size plain bilinear aliases little and costs a third, so area
averaging is used only below half size (the benchmark's largest single recipe cost otherwise).
"""

from __future__ import annotations

import cv2
import numpy as np

from mtssl.contract.frames import resize_short_side  # one implementation, shared with the evaluation

__all__ = ["resize", "resize_short_side"]


def resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    scale = min(width / image.shape[1], height / image.shape[0])
    interpolation = cv2.INTER_AREA if scale < 0.5 else cv2.INTER_LINEAR
    return cv2.resize(image, (width, height), interpolation=interpolation)
