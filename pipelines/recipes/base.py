"""What every per-sample recipe returns, and the entry each task puts in :data:`RECIPES`."""

from __future__ import annotations

import dataclasses
import json
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
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


def _no_draft(cfg: Any) -> int | None:
    return None


def _no_summary(counts: dict[str, np.ndarray]) -> dict[str, Any]:
    return {}


def _no_state(cfg: Any) -> Any:
    return None


@dataclass(frozen=True)
class Variants:
    """Named base configs a build chooses between with one option (motion's ``--quality``); the field
    options then override the chosen one's values. The first is the default."""

    option: str
    help: str
    configs: Mapping[str, Any]


@dataclass(frozen=True)
class Recipe:
    """A task's producer side: its config, what it reads and writes, and its per-sample function.

    ``source`` names the work units it reads (``pipelines.units``): ``"images"``, where
    ``make_sample(rgb, rng, cfg)`` turns one decoded image into a sample, or ``"videos"``, where
    ``make_sample(frame, window, cfg, state)`` turns one frame and the decoded frames around it into a
    sample (or raises ``pipelines.errors.Filtered``). Either raises ``pipelines.errors.Reject`` for an
    unusable input. ``fields`` are the members each sample gets (the build adds ``json``); ``summarize``
    turns the set's summed per-sample counts into manifest entries (the colour set's ab prior);
    ``preview_row`` draws one decoded sample for ``mtssl-data preview``.
    Every config has ``min_source_side``; ``draft_side`` lets an image recipe decode JPEGs at reduced
    DCT scale; ``setup`` makes a video recipe's per-shard state (motion: its optical-flow object);
    ``variants`` are named base configs of the build command (``pipelines.build_options``).
    """

    name: str
    config_type: type
    source: str
    fields: tuple[str, ...]
    make_sample: Callable[..., RecipeOutput]
    preview_row: Callable[[dict[str, Any]], np.ndarray]  # a decoded sample -> one row of the contact sheet
    draft_side: Callable[[Any], int | None] = _no_draft
    summarize: Callable[[dict[str, np.ndarray]], dict[str, Any]] = _no_summary
    setup: Callable[[Any], Any] = _no_state
    variants: Variants | None = None


def parsed_config(recipe: Recipe, plain: dict[str, Any]) -> Any:
    """The recipe's config dataclass from its JSON form (parsed once per worker, not per sample)."""
    return _parsed(recipe.config_type, json.dumps(plain, sort_keys=True))


@lru_cache(maxsize=16)
def _parsed(config_type: type, plain_json: str) -> Any:
    return from_plain(config_type, json.loads(plain_json))


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
