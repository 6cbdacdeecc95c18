"""Pictures of a run, redrawn from its ``log.jsonl`` at every checkpoint: loss curves and lasso weights.

``curves.png`` shows each task's loss and metric over the steps; ``lasso.png`` shows the latest lasso
weights as a (tasks x block-3 units) heat map, the paper's analysis of which task reads which depth.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mtssl.tasks import TASKS
from mtssl.train.logging import LOG_FILE, read_log

CURVES_FILE = "curves.png"
LASSO_FILE = "lasso.png"
METRICS = {name: task.metric_name for name, task in TASKS.items()}  # task -> its metric's log key


def write_plots(run: Path) -> list[Path]:
    """Draw both pictures into the run folder; returns the files written (none before the first log)."""
    log = Path(run) / LOG_FILE
    if not log.is_file():  # a checkpoint before the first log record (--save-every below --log-every)
        return []
    records = [r for r in read_log(log) if "loss" in r]
    if not records:
        return []
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    return [plot_curves(records, Path(run) / CURVES_FILE), plot_lasso(records[-1], Path(run) / LASSO_FILE)]


def plot_curves(records: list[dict], path: Path) -> Path:
    import matplotlib.pyplot as plt

    tasks = [t for t in METRICS if any(f"{t}_loss" in r for r in records)]
    steps = [r["step"] for r in records]
    fig, axes = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    for task in tasks:
        axes[0].plot(steps, [r.get(f"{task}_loss", np.nan) for r in records], label=task)  # nan once stopped
        axes[1].plot(steps, [r.get(METRICS[task], np.nan) for r in records], label=METRICS[task])
    axes[0].set_ylabel("loss")
    axes[0].set_yscale("log")
    axes[1].set_ylabel("metric")
    axes[1].set_xlabel("step")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_lasso(record: dict, path: Path) -> Path:
    import matplotlib.pyplot as plt

    tasks = list(record["lasso"])
    weights = np.array([record["lasso"][t] for t in tasks])
    limit = max(float(np.abs(weights).max()), 1e-6)
    fig, ax = plt.subplots(figsize=(max(4, 0.4 * weights.shape[1] + 2), 0.6 * len(tasks) + 1.5))
    image = ax.imshow(weights, cmap="RdBu_r", vmin=-limit, vmax=limit, aspect="auto")
    ax.set_yticks(range(len(tasks)), tasks)
    ax.set_xticks(range(weights.shape[1]), [str(i + 1) for i in range(weights.shape[1])])
    ax.set_xlabel("block-3 unit")
    ax.set_title(f"lasso weights at step {record['step']}")
    fig.colorbar(image, ax=ax)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
