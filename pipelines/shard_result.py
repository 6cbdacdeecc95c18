"""What building one shard produces, before it is written: samples, index rows, reject rows, summed counts.

Both work-unit kinds (``pipelines.units``) fill a :class:`ShardResult`; ``pipelines.shardjob`` writes it.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from pipelines.recipes.base import RecipeOutput
from pipelines.sources import display_name

INDEX_SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        ("shard", pa.int32()),
        ("source", pa.string()),
        ("frame", pa.int32()),  # frame index for video tasks, -1 for images
        ("label", pa.string()),
        ("source_mode", pa.string()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("params", pa.string()),
    ]
)
REJECT_SCHEMA = pa.schema(
    [
        ("source", pa.string()),
        ("shard", pa.int32()),
        ("frame", pa.int32()),  # the frame a filtered or failed row is about, -1 for a whole input
        ("kind", pa.string()),  # "rejected" (unusable input) or "filtered" (a frame the task's filter drops)
        ("reason", pa.string()),
        ("detail", pa.string()),
    ]
)


@dataclass
class ShardResult:
    samples: list[tuple[str, RecipeOutput]] = field(default_factory=list)
    index_rows: list[dict[str, Any]] = field(default_factory=list)
    reject_rows: list[dict[str, Any]] = field(default_factory=list)
    counts: dict[str, np.ndarray] = field(default_factory=dict)

    def reject(
        self, source: str, shard: int, reason: str, detail: str = "", frame: int = -1, kind: str = "rejected"
    ) -> None:
        self.reject_rows.append(
            {"source": source, "shard": shard, "frame": frame, "kind": kind, "reason": reason, "detail": detail}
        )

    def add(self, key: str, output: RecipeOutput, row: dict[str, Any]) -> None:
        self.samples.append((key, output))
        self.index_rows.append({"key": key, "frame": -1, **row, "params": output.fields["json"].decode()})
        for name, value in output.counts.items():
            self.counts[name] = self.counts.get(name, 0) + value

    def shuffle(self, rng: np.random.Generator) -> None:
        """Pre-shuffle the samples (and their index rows), so consecutive frames of a video do not sit together."""
        order = rng.permutation(len(self.samples))
        self.samples = [self.samples[i] for i in order]
        self.index_rows = [self.index_rows[i] for i in order]


def unit_source(unit: Any) -> str:
    """The input a work unit comes from: an image path, or a video segment's video (as written to the
    index and the rejects: non-UTF-8 bytes escaped)."""
    return display_name(unit if isinstance(unit, str) else unit["source"])


def label_of(source: str) -> str:
    """The class folder of an ImageNet-layout path (empty at the root)."""
    head, sep, _ = source.partition("/")
    return head if sep else ""


def internal_error(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc} | {traceback.format_exc(limit=3)[-400:]}"
