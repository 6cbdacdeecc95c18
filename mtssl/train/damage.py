"""Damaged shards seen by the loader, over all its workers: counted per task, logged, and judged.

Each loader worker checks every shard it reads against the manifest's md5 (``mtssl.data.stream``),
stops the run itself when what it saw is enough (``mtssl.data.health``), and hands its counts to the
trainer with every bundle. This tracker judges the union of what every worker saw by the same rule
(more than ``--max-bad-fraction`` of a task's shards damaged, or all of them), and gives the log its
``bad_shards`` (damaged shard reads per task).
"""

from __future__ import annotations

from typing import Any

from mtssl.data.health import DamagedData, verdict

__all__ = ["DamageTracker", "DamagedData"]


class DamageTracker:
    def __init__(self, max_bad_fraction: float, shards: dict[str, int] | None = None) -> None:
        self.max_bad_fraction = max_bad_fraction
        self.shards = dict(shards or {})  # task -> shards its stream draws from
        self.workers: dict[int, dict[str, Any]] = {}  # each worker's latest (cumulative) snapshot

    def update(self, snapshot: dict[str, Any] | None) -> None:
        if snapshot is not None:
            self.workers[int(snapshot["worker"])] = snapshot

    def counts(self) -> dict[str, tuple[int, int]]:
        """task -> (shard reads, damaged ones) over every worker."""
        out: dict[str, tuple[int, int]] = {}
        for snap in self.workers.values():
            for task in set(snap["good"]) | set(snap["bad"]):
                good, bad = snap["good"].get(task, 0), snap["bad"].get(task, 0)
                reads, damaged = out.get(task, (0, 0))
                out[task] = (reads + good + bad, damaged + bad)
        return out

    def damaged(self) -> dict[str, int]:
        """task -> damaged shard reads, for the tasks that had any (the log's ``bad_shards``)."""
        return {task: bad for task, (_, bad) in sorted(self.counts().items()) if bad}

    def damaged_shards(self) -> dict[str, list[str]]:
        """task -> the distinct damaged shards any worker found."""
        out: dict[str, list[str]] = {}
        for snap in self.workers.values():
            for task, urls in snap.get("damaged", {}).items():
                found = out.setdefault(task, [])
                found.extend(url for url in urls if url not in found)
        return out

    def check(self) -> None:
        """Raise :class:`DamagedData` naming the task, the set and a damaged shard when too many are damaged."""
        for task, urls in sorted(self.damaged_shards().items()):
            reason = verdict(task, urls, self.shards.get(task, len(urls)), self.max_bad_fraction)
            if reason is not None:
                raise DamagedData(reason)
