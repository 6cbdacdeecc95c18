"""The report's pictures, one function per figure, each writing one PNG (matplotlib, Agg backend).

Every function takes plain log records or probe numbers, so it can be called on any run; those that
have nothing to draw return None instead of an empty picture.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, never a display

import matplotlib.pyplot as plt  # noqa: E402 - after the backend choice
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator, PercentFormatter  # noqa: E402

from mtssl.eval.percent import percent  # noqa: E402
from mtssl.tasks import TASKS  # noqa: E402

DPI = 100
TRAIN, VAL = "-", "--"
MAX_LEGEND_UNITS = 8  # above this many block-3 units, trajectories get a colour bar instead of a legend


def task_colour(task: str) -> str:
    """One colour per task, the same in every figure of the page."""
    names = list(TASKS)
    return f"C{names.index(task) % 10}" if task in names else "C9"


def logged_tasks(records: Sequence[dict[str, Any]]) -> list[str]:
    """The registry's tasks that have a loss in the log, in registry order."""
    return [t for t in TASKS if any(f"{t}_loss" in r for r in records)]


def series(records: Sequence[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    """(steps, values) of ``key`` over the records that hold a finite number for it."""
    steps, values = [], []
    for r in records:
        value = r.get(key)
        if isinstance(value, int | float) and math.isfinite(value) and isinstance(r.get("step"), int | float):
            steps.append(float(r["step"]))
            values.append(float(value))
    return steps, values


def curves(records: Sequence[dict[str, Any]], path: Path, title: str) -> Path | None:
    """Total loss and learning rate, then per task its loss (left) and metric (right); val dashed."""
    train = [r for r in records if "loss" in r]
    tasks = logged_tasks(train)
    if not train:
        return None
    rows = 1 + len(tasks)
    stops = early_stops(records)
    fig, axes = plt.subplots(rows, 2, figsize=(11, 2.7 * rows), squeeze=False)
    _draw(axes[0][0], records, "loss", "val_loss", "black", "total loss", "loss")
    _draw(axes[0][1], records, "lr", None, "black", "learning rate", "lr")
    for row, task in enumerate(tasks, start=1):
        metric, colour = TASKS[task].metric_name, task_colour(task)
        _draw(axes[row][0], records, f"{task}_loss", f"val_{task}_loss", colour, f"{task}: loss", "loss")
        _draw(axes[row][1], records, metric, f"val_{metric}", colour, f"{task}: {metric}", metric)
        for ax in axes[row] if task in stops else ():
            ax.axvline(stops[task], color="grey", linestyle=":", label=f"stopped (step {stops[task]})")
            ax.legend(fontsize=8, loc="best")
    for ax in axes[-1]:
        ax.set_xlabel("step")
    fig.suptitle(title, fontsize=13)
    return _save(fig, path)


def early_stops(records: Sequence[dict[str, Any]]) -> dict[str, int]:
    """Task -> the step ``--early-stop`` stopped it at, from the log's ``task_stopped`` events."""
    return {r["task"]: r["step"] for r in records if r.get("event") == "task_stopped" and "task" in r}


def _draw(
    ax: Any, records: Sequence[dict], key: str, val_key: str | None, colour: str, title: str, ylabel: str
) -> None:
    """One panel: the train series solid, its ``val_`` twin dashed in the same colour."""
    train = [r for r in records if "loss" in r]
    drawn = []
    for style, label, rows, k in ((TRAIN, "train", train, key), (VAL, "val", records, val_key)):
        steps, values = series(rows, k) if k else ([], [])
        if steps:
            ax.plot(steps, values, style, color=colour, label=label, marker="o" if len(steps) == 1 else None)
            drawn.extend(values)
    if drawn and ylabel in ("loss", "lr") and min(drawn) > 0 and max(drawn) / min(drawn) > 20:
        ax.set_yscale("log")  # losses that fall by orders of magnitude, warm-up lr
    if not drawn:
        ax.text(0.5, 0.5, "not logged", ha="center", va="center", transform=ax.transAxes, color="grey")
    ax.set_title(title, fontsize=10)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps
    if ylabel.endswith("_acc"):  # an accuracy (a fraction in the log) is shown in percent; motion_iou stays 0..1
        ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if drawn:
        ax.legend(fontsize=8, loc="best")


def lasso_records(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records holding a non-empty lasso dict (task -> weight per block-3 unit)."""
    return [r for r in records if isinstance(r.get("lasso"), dict) and r["lasso"]]


def lasso_heatmap(record: dict[str, Any], path: Path, title: str) -> Path:
    """The lasso weights of one record as a (tasks x block-3 units) heat map, values written in small runs."""
    tasks = list(record["lasso"])
    width = max(len(w) for w in record["lasso"].values())
    weights = np.full((len(tasks), width), np.nan)
    for i, task in enumerate(tasks):
        weights[i, : len(record["lasso"][task])] = record["lasso"][task]
    limit = max(float(np.nanmax(np.abs(weights))), 1e-6)
    fig, ax = plt.subplots(figsize=(max(5.0, 0.45 * width + 3), 0.6 * len(tasks) + 1.8))
    image = ax.imshow(weights, cmap="RdBu_r", vmin=-limit, vmax=limit, aspect="auto")
    ax.set_yticks(range(len(tasks)), tasks)
    ax.set_xticks(range(width), [str(i + 1) for i in range(width)], fontsize=8 if width > 16 else 10)
    if width <= 16:
        for (i, j), w in np.ndenumerate(weights):
            if np.isfinite(w):
                dark = abs(w) > 0.6 * limit
                ax.text(j, i, f"{w:.2f}", ha="center", va="center", fontsize=7, color="white" if dark else "black")
    ax.set_xlabel("block-3 unit")
    ax.set_ylabel("task")
    ax.set_title(f"{title}: lasso weights at step {record.get('step', '?')}", fontsize=11)
    fig.colorbar(image, ax=ax, label="weight")
    return _save(fig, path)


def lasso_trajectories(records: Sequence[dict[str, Any]], path: Path, title: str) -> Path | None:
    """Per task, each block-3 unit's lasso weight against step; None with fewer than two lasso records."""
    rows = lasso_records(records)
    if len(rows) < 2:
        return None
    tasks = list(dict.fromkeys(t for r in rows for t in r["lasso"]))
    ncols = min(2, len(tasks))
    nrows = math.ceil(len(tasks) / ncols)
    size = (5.5 * ncols + 1, 3.0 * nrows + 0.8)
    fig, axes = plt.subplots(nrows, ncols, figsize=size, squeeze=False, layout="constrained")  # room for a colour bar
    units = max(len(w) for r in rows for w in r["lasso"].values())
    cmap = plt.get_cmap("viridis")
    for ax, task in zip(axes.flat, tasks, strict=False):
        picked = [r for r in rows if task in r["lasso"]]
        steps = [r.get("step", i) for i, r in enumerate(picked)]
        for u in range(units):
            values = [r["lasso"][task][u] if u < len(r["lasso"][task]) else np.nan for r in picked]
            ax.plot(steps, values, color=cmap(u / max(units - 1, 1)), label=f"unit {u + 1}", lw=1.4)
        ax.set_title(f"{task}", fontsize=10, color=task_colour(task))
        ax.set_xlabel("step")
        ax.set_ylabel("lasso weight")
        ax.grid(alpha=0.3)
        if units <= MAX_LEGEND_UNITS:
            ax.legend(fontsize=7, ncol=2 if units > 4 else 1, loc="best")
    for ax in list(axes.flat)[len(tasks) :]:
        ax.set_visible(False)
    if units > MAX_LEGEND_UNITS:
        scale = plt.cm.ScalarMappable(cmap=cmap, norm=matplotlib.colors.Normalize(1, units))
        bar = fig.colorbar(scale, ax=axes.ravel().tolist(), label="block-3 unit")
        bar.ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle(f"{title}: lasso weights over training", fontsize=12)
    return _save(fig, path, tight=False)


def ablation_bars(dataset: str, rows: dict[str, dict[str, tuple[float, float | None]]], path: Path) -> Path | None:
    """Grouped bars: per probe source, one bar per run (its accuracy); the random-init mean hatched over it.

    ``rows`` maps run name -> source -> (accuracy, random-init accuracy or None).
    """
    sources = list(dict.fromkeys(s for by_source in rows.values() for s in by_source))
    if not sources:
        return None
    runs = list(rows)
    width = 0.8 / len(runs)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(sources) * max(1, len(runs) / 2) + 2), 4.5))
    x = np.arange(len(sources))
    for k, run in enumerate(runs):
        pos = x - 0.4 + width * (k + 0.5)
        acc = [rows[run].get(s, (np.nan, None))[0] for s in sources]
        rnd = [rows[run].get(s, (np.nan, None))[1] for s in sources]
        ax.bar(pos, acc, width * 0.95, color=f"C{k % 10}", label=run)
        rnd_h = [np.nan if r is None else r for r in rnd]
        ax.bar(pos, rnd_h, width * 0.95, fill=False, hatch="///", edgecolor="0.3", lw=0, label=None)
        if len(runs) * len(sources) <= 24:
            for p, a, r in zip(pos, acc, rnd_h, strict=True):
                if np.isfinite(a):
                    top = a if not np.isfinite(r) else max(a, r)  # above the hatched bar when random wins
                    ax.text(p, top + 0.01, percent(a), ha="center", va="bottom", fontsize=7)
    ax.bar([np.nan], [np.nan], fill=False, hatch="///", edgecolor="0.3", label="random init (mean)")
    ax.set_xticks(x, sources, rotation=20 if len(sources) > 4 else 0)
    ax.set_ylim(0, 1.08)
    ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0, decimals=0))  # accuracies shown in percent
    ax.set_xlabel("feature source")
    ax.set_ylabel("probe accuracy (best of linear, k-NN)")
    ax.set_title(f"{dataset}: probe accuracy per run and source")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _save(fig, path)


def _save(fig: Figure, path: Path, tight: bool = True) -> Path:
    if tight:
        fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return path


def sweep_margins(dataset: str, values: dict[str, list[float]], path: Path) -> Path | None:
    """One bar per run: its mean margin over random init (points) with the seeds' sd, each seed a dot."""
    runs = [r for r, v in values.items() if v]
    if not runs:
        return None
    fig, ax = plt.subplots(figsize=(max(6.0, 0.7 * len(runs) + 2), 4.2))
    for k, run in enumerate(runs):
        points_ = [100 * v for v in values[run]]
        mean = float(np.mean(points_))
        err = float(np.std(points_, ddof=1)) if len(points_) > 1 else 0.0
        ax.bar(k, mean, 0.7, color=f"C{k % 10}", yerr=err, capsize=4, alpha=0.85)
        ax.scatter([k] * len(points_), points_, color="black", s=12, zorder=3)
    ax.axhline(0, color="0.3", lw=0.8)
    ax.set_xticks(range(len(runs)), runs, rotation=30, ha="right")
    ax.set_ylabel("margin over random init (points)")
    ax.set_title(f"{dataset}: margin per run (mean ± sd over seeds; dots: seeds)")
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def validation_overlay(runs: dict[str, list[Sequence[dict[str, Any]]]], path: Path) -> Path | None:
    """Per task, the validation loss of every run (one colour per run, one line per seed) against step."""
    tasks = list(dict.fromkeys(t for logs in runs.values() for records in logs for t in logged_tasks(records)))
    tasks = [t for t in tasks if any(series(r, f"val_{t}_loss")[0] for logs in runs.values() for r in logs)]
    if not tasks:
        return None
    cols = min(2, len(tasks))
    rows = (len(tasks) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(6.5 * cols, 3.2 * rows), squeeze=False)
    for ax, task in zip(axes.flat, tasks, strict=False):
        for k, (name, logs) in enumerate(runs.items()):
            for i, records in enumerate(logs):
                steps, values = series(records, f"val_{task}_loss")
                if steps:
                    ax.plot(steps, values, color=f"C{k % 10}", lw=1.3, alpha=0.9, label=name if i == 0 else None)
        ax.set_title(f"{task}: validation loss")
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(tasks) :]:
        ax.set_visible(False)
    return _save(fig, path)


def lasso_grid(records: dict[str, dict[str, Any]], path: Path) -> Path | None:
    """The last lasso weights of each run, side by side on one colour scale (tasks x block-3 units)."""
    runs = [r for r, rec in records.items() if rec and rec.get("lasso")]
    if not runs:
        return None
    mats = {}
    for run in runs:
        lasso = records[run]["lasso"]
        width = max(len(w) for w in lasso.values())
        mats[run] = (list(lasso), np.array([list(w) + [np.nan] * (width - len(w)) for w in lasso.values()]))
    limit = max(max(float(np.nanmax(np.abs(m))) for _, m in mats.values()), 1e-6)
    cols = min(3, len(runs))
    rows = (len(runs) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 2.6 * rows), squeeze=False)
    image = None
    for ax, run in zip(axes.flat, runs, strict=False):
        tasks, weights = mats[run]
        image = ax.imshow(weights, cmap="RdBu_r", vmin=-limit, vmax=limit, aspect="auto")
        ax.set_yticks(range(len(tasks)), tasks, fontsize=8)
        ax.set_xticks(range(weights.shape[1]), [str(i + 1) for i in range(weights.shape[1])], fontsize=7)
        ax.set_title(run, fontsize=10)
    for ax in list(axes.flat)[len(runs) :]:
        ax.set_visible(False)
    fig.colorbar(image, ax=axes.ravel().tolist(), label="lasso weight")
    fig.suptitle("lasso weights at the end (block-3 units)", fontsize=12)
    return _save(fig, path, tight=False)
