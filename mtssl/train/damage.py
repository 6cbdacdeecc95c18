"""Damaged shards seen by the loader: counted per task, logged, and a run that sees too many stops.

Each loader worker checks every shard it reads against the manifest's md5 (``mtssl.data.stream``) and
hands its counts to the trainer with every bundle. A damaged shard's samples never reach the loss;
this module decides when "skipped and counted" must become "stop": when the damaged share of a task's
shard reads passes ``--max-bad-fraction``, judged once there are enough reads that a single damaged
read cannot pass it alone (``1 / max_bad_fraction`` reads; 0 stops at the first damaged shard).
"""

from __future__ import annotations

import math
from typing import Any


class DamagedData(RuntimeError):
    """Too many damaged shards: the run stops rather than train on a thinned, skewed stream."""


class DamageTracker:
    def __init__(self, max_bad_fraction: float) -> None:
        self.max_bad_fraction = max_bad_fraction
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

    def check(self) -> None:
        """Raise :class:`DamagedData` naming the task and a damaged shard when the share is too high."""
        needed = 1 if self.max_bad_fraction <= 0 else math.ceil(1 / self.max_bad_fraction)
        for task, (reads, bad) in sorted(self.counts().items()):
            if bad and reads >= needed and bad / reads > self.max_bad_fraction:
                last = next(s["last_bad"][task] for s in self.workers.values() if task in s["last_bad"])
                raise DamagedData(
                    f"{task}: {bad} of {reads} shard reads were damaged (last: {last}), more than "
                    f"--max-bad-fraction {self.max_bad_fraction}. Check the set with `mtssl-data verify` and "
                    "rebuild it (the build resumes: rerun it after removing the damaged shards)"
                )
