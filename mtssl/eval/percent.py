"""How accuracies and shares are shown to people: percentages with a % sign, differences in points.

The JSON files keep fractions in 0..1 (``0.2``); the terminal tables of ``mtssl-eval probe`` and the
pages of ``mtssl-report`` show the same number as ``20.0%``, a random-init mean and its spread as
``52.0 ± 2.0%``, and a margin (a difference of two accuracies) as ``+6.0 points``. J (mean IoU, of
``mtssl-eval motion``) is not a share of images and stays a fraction, its field's convention.

No imports beyond the standard library: the report and the probe both use it.
"""

from __future__ import annotations

MISSING = "—"


def percent(value: float | None, missing: str = MISSING) -> str:
    """``0.2`` -> ``20.0%``; None -> ``missing``."""
    return missing if value is None else f"{100 * value:.1f}%"


def percent_spread(mean: float | None, std: float | None, missing: str = MISSING) -> str:
    """A mean and its standard deviation, both fractions: ``52.0 ± 2.0%`` (``52.0%`` without a spread)."""
    if mean is None:
        return missing
    return percent(mean) if std is None else f"{100 * mean:.1f} ± {100 * std:.1f}%"


def points(gap: float | None, missing: str = MISSING) -> str:
    """A difference of two fractions in percentage points, signed: ``0.06`` -> ``+6.0 points``."""
    return missing if gap is None else f"{100 * gap:+.1f} points"
