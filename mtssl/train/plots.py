"""Pictures of a run, redrawn from its ``log.jsonl`` at every checkpoint: loss curves and lasso weights.

``curves.png`` shows each task's loss and metric over the steps, training solid and validation dashed;
``lasso.png`` shows the latest lasso weights as a (tasks x block-3 units) heat map, the paper's analysis
of which task reads which depth. Both are the report's own figures (``mtssl.report.figures``), so the run
folder and the report show the same pictures.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mtssl.train.logging import LOG_FILE, read_log

CURVES_FILE = "curves.png"
LASSO_FILE = "lasso.png"


def write_plots(run: Path) -> list[Path]:
    """Draw both pictures into the run folder; returns the files written (none before the first log)."""
    log = Path(run) / LOG_FILE
    if not log.is_file():  # a checkpoint before the first log record (--save-every below --log-every)
        return []
    records = read_log(log)  # training records and validation-only ones ({"event": "val"})
    if not any("loss" in r for r in records):
        return []
    from mtssl.report.figures import lasso_records

    written = [plot_curves(records, Path(run) / CURVES_FILE)]
    lassos = lasso_records(records)
    if lassos:
        written.append(plot_lasso(lassos[-1], Path(run) / LASSO_FILE))
    return [p for p in written if p is not None]


def plot_curves(records: list[dict[str, Any]], path: Path) -> Path | None:
    from mtssl.report.figures import curves  # matplotlib: only when a picture is drawn

    return curves(records, path, Path(path).parent.name)


def plot_lasso(record: dict[str, Any], path: Path) -> Path:
    from mtssl.report.figures import lasso_heatmap

    return lasso_heatmap(record, path, Path(path).parent.name)
