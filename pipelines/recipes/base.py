"""What every per-sample recipe returns, and the entry each task puts in :data:`RECIPES`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class RecipeOutput:
    """One sample: encoded fields (contract names -> bytes; the build adds ``json``), the parameters
    that made it (JSON-able, stored as the sample's ``json`` and in the Parquet index) and per-sample
    counts that the build sums into the manifest (e.g. the colour set's ab histogram)."""

    fields: dict[str, bytes]
    params: dict[str, Any]
    counts: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass(frozen=True)
class Recipe:
    """A task's producer side: its paper-default config and the pure function source image -> sample."""

    name: str
    config_type: type
    make_sample: Callable[[np.ndarray, np.random.Generator, Any], RecipeOutput]
    min_source_side: Callable[[Any], int]
    draft_side: Callable[[Any], int | None]
    summarize: Callable[[dict[str, np.ndarray]], dict[str, Any]] = lambda counts: {}
