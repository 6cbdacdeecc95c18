"""``--tensorboard``: the run's log records as TensorBoard scalars and its lasso weights as a picture.

With ``--tensorboard`` the main rank (rank 0 under DDP) writes event files to ``<out>/tensorboard/``
beside ``log.jsonl``: every scalar of every record the run logs, under the tags :func:`scalars` gives
(``train/relpos/loss``, ``val/relpos/metric``, ``lasso/relpos/unit3``, ``lr``, ``data_wait``,
``samples_per_s/relpos``, ...), and at each checkpoint the lasso weights as a heat map (the image
``lasso``, drawn as ``lasso.png`` is). The writer is flushed at every checkpoint and closed when the run
ends, also when it is interrupted. A resumed run appends to the same folder and purges what the old run
logged after the checkpoint it resumes (as ``log.jsonl`` drops those records), so the curves show the
one run that the checkpoints continue. ``tensorboard --logdir runs/`` shows every run below ``runs/``.

The ``tensorboard`` package is optional (``pip install 'mtssl[tensorboard]'``); it is imported only when
``--tensorboard`` is given, and its absence is a one-line error before the run starts.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from mtssl.tasks import TASKS
from mtssl.train.config import ConfigError

TB_DIR = "tensorboard"
NEEDS_PACKAGE = "--tensorboard needs the tensorboard package: pip install 'mtssl[tensorboard]'"
LASSO_IMAGE = "lasso"
TASK_OF_METRIC = {task.metric_name: name for name, task in TASKS.items()}  # relpos_acc -> relpos
SCALAR_EVENTS = (None, "val")  # step records and validation records; task_stopped and end hold no curves
NOT_CURVES = {"step", "stopped"}  # the x axis; early-stopped tasks -> their step (not a curve)


def require_tensorboard() -> None:
    """Raise a one-line :class:`ConfigError` when the tensorboard package (or torch's writer) is missing."""
    try:
        import tensorboard  # noqa: F401
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError as exc:
        raise ConfigError(NEEDS_PACKAGE) from exc


def tag_of(key: str) -> str:
    """The TensorBoard tag of one scalar key of a log record.

    ``relpos_loss`` -> ``train/relpos/loss``, ``relpos_acc`` (a task's metric) -> ``train/relpos/metric``,
    ``val_relpos_loss`` -> ``val/relpos/loss``, ``val_relpos_acc`` -> ``val/relpos/metric``, ``loss`` and
    ``lasso_penalty`` -> ``train/loss``, ``train/lasso_penalty``, ``relpos_samples_per_s`` ->
    ``samples_per_s/relpos``; any other key (``lr``, ``data_wait``, ``step_s``) is its own tag, and any
    other ``val_`` key goes under ``val/``."""
    split, rest = ("val", key[4:]) if key.startswith("val_") else ("train", key)
    if rest in TASK_OF_METRIC:
        return f"{split}/{TASK_OF_METRIC[rest]}/metric"
    if rest.endswith("_loss"):
        return f"{split}/{rest[: -len('_loss')]}/loss"
    if split == "train" and rest.endswith("_samples_per_s"):
        return f"samples_per_s/{rest[: -len('_samples_per_s')]}"
    if rest in ("loss", "lasso_penalty"):
        return f"{split}/{rest}"
    return f"val/{rest}" if split == "val" else key


def unit_tags(task: str, units: int) -> list[str]:
    """``lasso/<task>/unit<i>`` for the block-3 units 1..units (numbered as in lasso.png), zero-padded so
    that TensorBoard sorts them in order."""
    width = len(str(units))
    return [f"lasso/{task}/unit{i:0{width}d}" for i in range(1, units + 1)]


def scalars(record: Mapping[str, Any]) -> dict[str, float]:
    """Every scalar of a ``log.jsonl`` record, by TensorBoard tag (see :func:`tag_of`): the lasso weights
    per task and block-3 unit, damaged shard reads per task (``bad_shards/<task>``), and every other number
    but the step. Records of events other than validation (``task_stopped``, ``end``) give none."""
    if record.get("event") not in SCALAR_EVENTS:
        return {}
    out: dict[str, float] = {}
    for key, value in record.items():
        if key == "lasso" and isinstance(value, Mapping):
            for task, row in value.items():
                out |= {tag: float(a) for tag, a in zip(unit_tags(task, len(row)), row, strict=True)}
        elif key == "bad_shards" and isinstance(value, Mapping):
            out |= {f"bad_shards/{task}": float(n) for task, n in value.items()}
        elif key not in NOT_CURVES and isinstance(value, int | float) and not isinstance(value, bool):
            out[tag_of(key)] = float(value)
    return out


def lasso_picture(step: int, tasks: Sequence[str], weights: Any, title: str) -> np.ndarray:
    """The (tasks x block-3 units) heat map that ``lasso.png`` and the report draw
    (``mtssl.report.figures.lasso_heatmap``), of these weights, as an HxWx3 uint8 array."""
    from PIL import Image

    from mtssl.report.figures import lasso_heatmap  # matplotlib (Agg): only when a picture is drawn

    rows = {task: [float(a) for a in row] for task, row in zip(tasks, weights, strict=True)}  # tensor or lists
    with tempfile.TemporaryDirectory() as tmp:
        path = lasso_heatmap({"step": step, "lasso": rows}, Path(tmp) / "lasso.png", title)
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))


class Board:
    """The run's TensorBoard writer (main rank only); every method is a no-op when off."""

    def __init__(self, folder: Path | None = None, purge_step: int | None = None, title: str = "") -> None:
        self.writer, self.title = None, title  # title: the run's name, over the lasso picture
        if folder is not None:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(folder), purge_step=purge_step)

    def write(self, record: Mapping[str, Any]) -> None:
        """A log record's scalars (:func:`scalars`) at its step."""
        if self.writer is None or "step" not in record:
            return
        for tag, value in scalars(record).items():
            self.writer.add_scalar(tag, value, int(record["step"]))

    def checkpoint(self, step: int, tasks: Sequence[str], lasso: Any) -> None:
        """At a checkpoint: the lasso heat map (image ``lasso``), then everything written so far to disk."""
        if self.writer is None:
            return
        self.writer.add_image(LASSO_IMAGE, lasso_picture(step, tasks, lasso, self.title), step, dataformats="HWC")
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


@contextmanager
def open_board(enabled: bool, out: Path, resumed_at: int | None) -> Iterator[Board]:
    """The run's :class:`Board` in ``<out>/tensorboard/`` when ``enabled`` (else one that writes nothing),
    closed on the way out, also on an exception or interrupt. ``resumed_at``: the step of the checkpoint
    being resumed; events the earlier run logged after it are purged (TensorBoard hides steps from
    ``resumed_at + 1`` in older files), as ``log.jsonl`` drops its records after it."""
    purge = None if resumed_at is None else resumed_at + 1
    board = Board(Path(out) / TB_DIR, purge, Path(out).resolve().name) if enabled else Board()
    try:
        yield board
    finally:
        board.close()


class TeeLog:
    """The run's log (:class:`~mtssl.train.logging.RunLog`) that also hands every record to a board; any
    other attribute is the log's own."""

    def __init__(self, log: Any, board: Board) -> None:
        self.log, self.board = log, board

    def write(self, record: Mapping[str, Any]) -> None:
        self.log.write(record)
        self.board.write(record)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.log, name)
