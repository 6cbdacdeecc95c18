"""Run logs: JSON lines in ``<out>/log.jsonl`` (one record every ``--log-every`` steps) and a progress bar.

A record holds the step, learning rate and total loss, per task its loss, metric and samples/s (over
every rank), the share of the step spent waiting for data (``data_wait``: time in ``next()`` plus the
host-to-device copy, over the window's wall time), the step time, the L1 penalty and the lasso weights
(task -> weight per block-3 unit). On resume, records after the resumed step are dropped, so the log
describes the one run that the checkpoints continue.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Mapping
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import torch

LOG_FILE = "log.jsonl"


class RunLog:
    """Append-only JSON lines; ``resume_step`` trims records written after the checkpoint being resumed."""

    def __init__(self, path: Path, enabled: bool = True, resume_step: int | None = None) -> None:
        self.path, self.enabled = Path(path), enabled
        if enabled and resume_step is not None and self.path.exists():
            kept = [line for line in self.path.read_text().splitlines() if _step_of(line) <= resume_step]
            self.path.write_text("".join(line + "\n" for line in kept))

    def write(self, record: Mapping[str, Any]) -> None:
        if not self.enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as fh:
            fh.write(json.dumps(record, sort_keys=True) + "\n")


def _step_of(line: str) -> float:
    try:
        return float(json.loads(line).get("step", float("inf")))
    except (json.JSONDecodeError, AttributeError):
        return float("inf")  # a torn last line from a crash: drop it


def read_log(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


class Window:
    """Sums of the metrics and the data wait over the steps since the last record.

    Metrics stay device tensors until :meth:`means`, so logging adds no per-step synchronisation.
    """

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.steps = 0
        self.wait_s = 0.0
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, int] = {}  # steps that reported each key (an early-stopped task stops reporting)

    def add(self, loss: torch.Tensor, metrics: Mapping[str, torch.Tensor], wait_s: float) -> None:
        self.steps += 1
        self.wait_s += wait_s
        for key, value in {"loss": loss.detach(), **metrics}.items():
            value = value.detach().float()
            self.sums[key] = self.sums[key] + value if key in self.sums else value.clone()
            self.counts[key] = self.counts.get(key, 0) + 1

    def means(self) -> dict[str, float]:
        """Per-step means of the metrics, the data-wait share and the wall time per step."""
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        out = {key: value.item() / self.counts[key] for key, value in self.sums.items()}
        out["data_wait"] = self.wait_s / elapsed
        out["step_s"] = elapsed / self.steps
        return out


class _NoBar:
    def update(self, step: int, loss: float | None = None) -> None:
        pass


def rate_text(steps_per_s: float | None, samples_per_step: int) -> str:
    """``1.52 steps/s, 97 samples/s`` (samples over every task and rank); ``-`` before a rate is known."""
    if not steps_per_s:
        return "- steps/s"
    samples = f", {steps_per_s * samples_per_step:,.0f} samples/s" if samples_per_step else ""
    return f"{steps_per_s:.2f} steps/s{samples}"


def duration(seconds: float) -> str:
    """``42s``, ``3m05s``, ``1h02m``: a wall time or an ETA for people."""
    seconds = max(int(round(seconds)), 0)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class _Lines:
    """Without a terminal (batch jobs): one plain line per log record, with the rate and the ETA."""

    def __init__(self, total: int, start_step: int = 0, samples_per_step: int = 0) -> None:
        self.total, self.start = total, time.perf_counter()
        self.first, self.samples_per_step = start_step, samples_per_step

    def update(self, step: int, loss: float | None = None) -> None:
        if loss is None:
            return
        elapsed = time.perf_counter() - self.start
        speed = (step - self.first) / elapsed if elapsed > 0 and step > self.first else None
        eta = f", eta {duration((self.total - step) / speed)}" if speed else ""
        print(
            f"step {step}/{self.total} loss {loss:.4f} | {rate_text(speed, self.samples_per_step)} | "
            f"elapsed {duration(elapsed)}{eta}",
            file=sys.stderr,
            flush=True,
        )


class _RichBar:
    def __init__(self, progress: Any, task_id: Any) -> None:
        self.progress, self.task_id = progress, task_id

    def update(self, step: int, loss: float | None = None) -> None:
        fields = {} if loss is None else {"loss": f"loss {loss:.4f}"}
        self.progress.update(self.task_id, completed=step, **fields)


@contextmanager
def progress_bar(
    enabled: bool | None, total: int, start: int, samples_per_step: int = 0
) -> AbstractContextManager[Any]:
    """A rich bar with rate and ETA when ``enabled``; None: the bar on a terminal, plain lines otherwise;
    False: silent. Progress goes to stderr (results, the closing summary, to stdout). ``samples_per_step``:
    the samples one optimizer step reads (all tasks, micro-batches and ranks), for the samples/s."""
    if enabled is None:
        enabled = sys.stderr.isatty()
        if not enabled:
            yield _Lines(total, start, samples_per_step)
            return
    if not enabled:
        yield _NoBar()
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    class RateColumn(TextColumn):
        def render(self, task: Any) -> Any:  # type: ignore[override]
            return rate_text(task.speed, samples_per_step)

    columns = (
        TextColumn("train"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(""),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[loss]}"),
    )
    with Progress(*columns, console=Console(stderr=True)) as progress:
        task_id = progress.add_task("train", total=total, completed=start, loss="")
        yield _RichBar(progress, task_id)
