"""What every per-sample recipe returns, and the entry each task puts in :data:`RECIPES`."""

from __future__ import annotations

import dataclasses
import typing
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


def from_plain(config_type: type, data: dict[str, Any]) -> Any:
    """Rebuild a (possibly nested) frozen config dataclass from its JSON form (lists back to tuples)."""
    hints = typing.get_type_hints(config_type)
    values = {}
    for f in dataclasses.fields(config_type):
        if f.name not in data:
            continue
        value, hint = data[f.name], hints[f.name]
        if dataclasses.is_dataclass(hint) and isinstance(value, dict):
            value = from_plain(hint, value)
        elif isinstance(value, list):
            value = tuple(value)
        values[f.name] = value
    return config_type(**values)
