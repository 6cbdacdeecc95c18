"""What planning the work units of a build gives."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class PlanRequest:
    """What every unit planner is asked: the inputs' tree, the recipe config, the order's seed, the shard
    size, a random subset (``limit``) and whether to show progress."""

    root: Path
    cfg: Any
    seed: int
    samples_per_shard: int
    limit: int | None
    show_progress: bool = True
    rehash: bool = False  # fingerprint each input's content too (reads every input once more)

    def __post_init__(self) -> None:
        if self.samples_per_shard < 1:
            raise ValueError("samples_per_shard must be at least 1")


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
    input_digests: list[str] | None = None  # content digest per unit, with --rehash
