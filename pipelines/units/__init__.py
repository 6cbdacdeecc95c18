"""The two kinds of work unit a recipe reads, by the name a recipe declares as its ``source``.

- ``images`` (:mod:`pipelines.units.images`): one image file per unit, one sample (or reject) each;
- ``videos`` (:mod:`pipelines.units.videos`): one segment of one video per unit, one sample (or filtered
  row) per considered frame.

Each module plans its units (listing, order, split into shards, input fingerprint) and runs a shard's
units through the recipe's per-sample function, so ``pipelines.build`` and ``pipelines.shardjob`` hold one
path for every task.
"""

from __future__ import annotations

from types import ModuleType

from pipelines.units import images, videos
from pipelines.units.base import PlanRequest, Units

KINDS: dict[str, ModuleType] = {"images": images, "videos": videos}


__all__ = ["KINDS", "PlanRequest", "Units"]
