"""Learning-rate schedules as precomputed per-step arrays (as DINO does): easy to log, plot and test."""

from __future__ import annotations

import numpy as np


def warmup_then_decay(
    base: float,
    steps: int,
    warmup: int = 0,
    decay: str = "cosine",
    final: float = 0.0,
    step_every: int = 30_000,
    gamma: float = 0.1,
) -> np.ndarray:
    """Learning rate of every step: linear warm-up from 0 to ``base``, then ``decay``.

    ``cosine`` falls from ``base`` to ``final`` over the remaining steps; ``step`` multiplies by ``gamma``
    every ``step_every`` steps after the warm-up; ``none`` stays at ``base``.
    """
    warmup = min(warmup, steps)
    ramp = np.arange(1, warmup + 1, dtype=np.float64) / max(warmup, 1) * base
    rest = steps - warmup
    t = np.arange(rest, dtype=np.float64)
    if decay == "cosine":
        tail = final + 0.5 * (base - final) * (1 + np.cos(np.pi * t / max(rest, 1)))
    elif decay == "step":
        tail = base * gamma ** np.floor(t / max(step_every, 1))
    elif decay == "none":
        tail = np.full(rest, base)
    else:
        raise ValueError(f"unknown decay {decay!r}")
    return np.concatenate([ramp, tail])
