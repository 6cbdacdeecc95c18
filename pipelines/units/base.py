"""What planning the work units of a build gives."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Units:
    """A planned list of work units and its split into shards (see ``pipelines.plan.BuildPlan``)."""

    units: list[Any]
    bounds: list[tuple[int, int]]
    inputs: int
    inputs_hash: str
    unit_name: str
    config_extra: dict[str, Any] = field(default_factory=dict)  # kind-specific keys of the resolved config
    input_stats: list[tuple[int, int]] | None = None
