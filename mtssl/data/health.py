"""Damaged shards seen by the loader: what each reader counts, and when a task must stop.

Each reader (a loader worker, or the main process with ``--workers 0``) checks every shard it reads
against the manifest's md5 (``mtssl.data.stream``) and records the read here. A damaged shard gives no
sample, a warning and a count. The rule that turns "skipped and counted" into "stop" is judged on
*distinct shards*, so it holds at any number of shards and needs no long run of reads first: a task stops
when more than ``max_bad_fraction`` of the shards of its stream are damaged, and always when every one of
them is (no sample can ever come; resampling would spin forever). The reader applies the rule to what it
has seen and raises at once; the trainer applies it to the union over all readers
(``mtssl.train.damage``), which can only see more.
"""

from __future__ import annotations

import posixpath
from typing import Any

VERIFY_HINT = (
    "check it with `mtssl-data verify {set}` and rebuild it (the build resumes after the damaged shards are removed)"
)


class DamagedData(RuntimeError):
    """Too many damaged shards (or none that gives a sample): the run stops rather than train on a thinned,
    skewed stream, or spin. Raised in a loader worker it reaches the trainer wrapped by torch's DataLoader
    ("Caught DamagedData in DataLoader worker process 0. Original Traceback ..."); the constructor keeps
    only the original one-line message, so the CLI prints the same line in both cases."""

    def __init__(self, message: str) -> None:
        if message.startswith("Caught ") and "DamagedData: " in message:
            message = message.rstrip().rsplit("DamagedData: ", 1)[1]
        super().__init__(message)


def set_of(url: str) -> str:
    """The shard set (folder or URL prefix) a shard belongs to."""
    return posixpath.dirname(url.rstrip("/")) or "."


def verdict(task: str, damaged: list[str], shards: int, max_bad_fraction: float) -> str | None:
    """The one-line reason ``task`` must stop, given its damaged shards (distinct) out of ``shards``; None
    while it may go on."""
    if not damaged or shards <= 0:
        return None
    where = set_of(damaged[-1])
    hint = VERIFY_HINT.format(set=where)
    if len(damaged) >= shards:
        return f"{task}: every shard of {where} is damaged ({shards} of {shards}, e.g. {damaged[-1]}); {hint}"
    if len(damaged) > max_bad_fraction * shards:
        return (
            f"{task}: {len(damaged)} of its {shards} shards are damaged (last: {damaged[-1]}), more than "
            f"--max-bad-fraction {max_bad_fraction} of them; {hint}"
        )
    return None


class ShardHealth:
    """Shards read and shards found damaged, per task, in this reader. The stream hands a snapshot to the
    trainer with every bundle (see :meth:`snapshot`)."""

    def __init__(self) -> None:
        self.good: dict[str, int] = {}  # reads that gave every sample of the shard
        self.bad: dict[str, int] = {}  # reads stopped by damage
        self.last_bad: dict[str, str] = {}
        self.damaged: dict[str, list[str]] = {}  # distinct damaged shards, in the order found
        self.empty_run: dict[str, int] = {}  # shard reads in a row that gave no sample
        self.last_read: dict[str, str] = {}

    def record(self, task: str, url: str, ok: bool, samples: int = 1) -> None:
        counts = self.good if ok else self.bad
        counts[task] = counts.get(task, 0) + 1
        self.last_read[task] = url
        if not ok:
            self.last_bad[task] = url
            found = self.damaged.setdefault(task, [])
            if url not in found:
                found.append(url)
        self.empty_run[task] = 0 if samples else self.empty_run.get(task, 0) + 1

    def check(self, task: str, shards: int, max_bad_fraction: float) -> None:
        """Raise :class:`DamagedData` when this reader has seen enough damage of ``task`` to stop, or has read
        every shard's worth of reads in a row without one sample (the set holds no sample of its fields)."""
        reason = verdict(task, self.damaged.get(task, []), shards, max_bad_fraction)
        if reason is not None:
            raise DamagedData(reason)
        stalled = self.empty_run.get(task, 0)
        if stalled >= max(4 * shards, 16):
            raise DamagedData(
                f"{task}: {stalled} shard reads in a row gave no sample (last: {self.last_read.get(task, '?')}); "
                "the set holds none of the fields this run reads: check it with `mtssl-data info` and `verify`"
            )

    def snapshot(self) -> dict[str, Any]:
        return {
            "good": dict(self.good),
            "bad": dict(self.bad),
            "last_bad": dict(self.last_bad),
            "damaged": {task: list(urls) for task, urls in self.damaged.items()},
        }


HEALTH = ShardHealth()  # for readers outside a StepStream (validation batches, benchmarks)
