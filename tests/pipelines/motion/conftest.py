"""Scenes with known motion for the motion-mask tests: a photo seen by a panning, zooming camera, with or
without a textured square that moves on its own. Deterministic; no video files."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

SIZE = (336, 256)  # (width, height): 256 px on the shorter side, the working resolution


def _world() -> np.ndarray:
    from skimage import data

    return cv2.resize(data.astronaut(), (720, 720), interpolation=cv2.INTER_CUBIC).astype(np.float32)


def _texture() -> np.ndarray:
    from skimage import data

    return cv2.resize(data.coffee()[80:330, 150:400], (84, 84), interpolation=cv2.INTER_AREA).astype(np.float32)


def camera(t: float, pan: tuple[float, float] = (2.3, 1.1), zoom: float = 0.006) -> np.ndarray:
    """World -> frame homography at time t: sub-pixel pan, steady zoom, a little perspective."""
    s = (1 + zoom) ** t
    cx, cy = 360 + pan[0] * t, 360 + pan[1] * t
    persp = np.array([[1, 0, 0], [0, 1, 0], [2e-6 * t, -1e-6 * t, 1]])
    centre = np.array([[1, 0, SIZE[0] / 2], [0, 1, SIZE[1] / 2], [0, 0, 1]])
    scale = np.array([[s, 0, -s * cx], [0, s, -s * cy], [0, 0, 1]])
    return centre @ persp @ scale


def render(t: float, square_at: tuple[float, float] | None, noise_seed: int, **cam) -> tuple[np.ndarray, np.ndarray]:
    """Frame t (RGB uint8) and its ground-truth mask; the square is placed in frame coordinates."""
    frame = cv2.warpPerspective(_world(), camera(t, **cam), SIZE, flags=cv2.INTER_LINEAR)
    mask = np.zeros(SIZE[::-1], np.uint8)
    if square_at is not None:
        shift = np.float32([[1, 0, square_at[0]], [0, 1, square_at[1]]])
        alpha = cv2.warpAffine(np.ones((84, 84), np.float32), shift, SIZE)[..., None]
        frame = frame * (1 - alpha) + cv2.warpAffine(_texture(), shift, SIZE) * alpha
        mask = np.where(alpha[..., 0] >= 0.5, 255, 0).astype(np.uint8)
    noisy = frame + np.random.default_rng(noise_seed).normal(0, 2.0, frame.shape)
    return np.clip(np.round(noisy), 0, 255).astype(np.uint8), mask


def square_path(t: float) -> tuple[float, float]:
    """The square moves 1.5 px/frame right and 1 px/frame down in the frame, against the camera's pan."""
    return 110 + 1.5 * t, 70 + 1.0 * t


@pytest.fixture(scope="session")
def pan_zoom_frames() -> list[np.ndarray]:
    """Camera motion only (no moving object): 8 frames."""
    return [render(t, None, noise_seed=t)[0] for t in range(8)]


@pytest.fixture(scope="session")
def square_scene() -> tuple[list[np.ndarray], list[np.ndarray]]:
    """A textured square moving over a panning, zooming photo: 8 frames and their exact masks."""
    rendered = [render(t, square_path(t), noise_seed=100 + t) for t in range(8)]
    return [f for f, _ in rendered], [m for _, m in rendered]
