"""Per-task early stopping: a task that memorises its shards stops training the shared trunk.

On a small shard set a pretext can learn its samples by heart while the others still generalise: in the
``--preset cpu`` runs on 400 photos, relpos's validation loss bottoms out near step 500 and then climbs
above chance (ln 8) while its train accuracy keeps rising, and motion's does so from step ~100 on the
sample's few videos (docs/results.md). Their gradients from then on teach the last trunk stage the
training set, not features. The rule is the validation split's verdict: once a task's validation loss
has stayed more than ``margin`` (relative) above its best for ``patience`` validations in a row, the task
stops. Its head and its lasso row keep their weights; it is still validated (so the log shows what it
would have done) but no longer trained, and its mini-batch is no longer run through the network. The
last task still training never stops, so a run always trains something.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class Watch:
    """One task's record: its best validation loss so far, and the validations in a row above the bar."""

    best: float
    best_step: int
    above: int = 0
    stopped_at: int | None = None


class EarlyStop:
    """Watches each task's ``val_<task>_loss``; ``patience`` 0 never stops anything."""

    def __init__(self, tasks: Sequence[str], patience: int, margin: float) -> None:
        self.tasks = tuple(tasks)
        self.patience = patience
        self.margin = margin
        self.watches: dict[str, Watch] = {}

    @property
    def stopped(self) -> dict[str, int]:
        """Stopped tasks and the step each stopped at."""
        return {t: w.stopped_at for t, w in self.watches.items() if w.stopped_at is not None}

    def active(self) -> list[str]:
        return [t for t in self.tasks if t not in self.stopped]

    def update(self, scores: Mapping[str, float], step: int) -> list[str]:
        """Take one validation's scores; returns the tasks that stop at this step."""
        if self.patience <= 0:
            return []
        newly = []
        for task in self.tasks:
            loss = scores.get(f"val_{task}_loss")
            if loss is None:
                continue
            watch = self.watches.get(task)
            if watch is None or not math.isfinite(watch.best):
                if math.isfinite(loss):
                    self.watches[task] = Watch(float(loss), step, stopped_at=watch.stopped_at if watch else None)
                continue
            if not math.isfinite(loss):  # a diverged task counts as above the bar
                watch.above += 1
            elif loss < watch.best:
                watch.best, watch.best_step, watch.above = float(loss), step, 0
            elif loss > watch.best * (1.0 + self.margin):
                watch.above += 1
            else:
                watch.above = 0
            if watch.stopped_at is None and watch.above >= self.patience and len(self.active()) > 1:
                watch.stopped_at = step
                newly.append(task)
        return newly

    def set_stopped(self, stopped: Mapping[str, int]) -> None:
        """Mark tasks stopped as another rank decided (only rank 0 validates)."""
        for task, step in stopped.items():
            watch = self.watches.setdefault(task, Watch(float("nan"), step))
            watch.stopped_at = step

    def describe(self, task: str) -> str:
        watch = self.watches[task]
        return (
            f"{task} stops training at step {watch.stopped_at}: its validation loss has stayed more than "
            f"{self.margin:.0%} above its best ({watch.best:.4f} at step {watch.best_step}) for "
            f"{watch.above} validation{'s' if watch.above != 1 else ''} in a row (--early-stop)"
        )

    def state_dict(self) -> dict[str, Any]:
        return {task: asdict(watch) for task, watch in self.watches.items()}

    def load_state_dict(self, state: Mapping[str, Mapping[str, Any]]) -> None:
        self.watches = {task: Watch(**dict(values)) for task, values in state.items()}
