"""One comparison of a sweep: per run, over its seeds, each probe set's best accuracy and margin over random
init (mean and spread), and its wall time; as rows for the terminal, ``--json`` and the report.

The margin of one probe file is its ``best`` block's (``mtssl.report.probes.best``): the trained trunk's
best source and classifier against the best random-init one. The spread is the sample standard deviation
over seeds (None with one seed).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mtssl.report.probes import best
from mtssl.report.sweep import stats, train_seconds  # the report's definitions: one for the table and the page
from mtssl.sweep.plan import Item


def mean(values: list[float]) -> float | None:
    return stats(values)[0]


def rows(items: list[Item], record: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per run of the spec (in the spec's order): seeds done, per probe set mean/spread of the best
    accuracy and of the margin (fractions, as in the probe files), mean wall time of training."""
    by_run: dict[str, list[Item]] = {}
    for item in items:
        by_run.setdefault(item.run, []).append(item)
    out = []
    for run, group in by_run.items():
        entries = [{"folder": str(i.folder), **record.get("items", {}).get(i.name, {})} for i in group]
        row: dict[str, Any] = {
            "run": run,
            "seeds": [i.seed for i in group],
            "done": [i.seed for i in group if i.done],
            "failed": [i.seed for i, e in zip(group, entries, strict=True) if e.get("status") == "failed"],
            "train_s": mean([s for e in entries if (s := train_seconds(e)) is not None]),
            "probes": {},
        }
        for probe in group[0].probes:
            accs, margins = [], []
            for item in group:
                path = item.probe_file(probe)
                if path.is_file():
                    acc, _, gap = best(json.loads(path.read_text()))
                    accs += [acc] if acc is not None else []
                    margins += [gap] if gap is not None else []
            (acc, acc_spread), (gap, gap_spread) = stats(accs), stats(margins)
            row["probes"][probe] = {
                "acc": acc, "acc_spread": acc_spread, "margin": gap, "margin_spread": gap_spread, "n": len(margins)
            }  # fmt: skip
        out.append(row)
    return out


def points(value: float | None, spread_: float | None = None, signed: bool = False) -> str:
    """A fraction as percentage points for people: ``+6.2 ± 1.1``, ``71.5``; ``-`` when missing."""
    if value is None:
        return "-"
    text = f"{100 * value:+.1f}" if signed else f"{100 * value:.1f}"
    return text + (f" ± {100 * spread_:.1f}" if spread_ is not None else "")


def markdown(table: list[dict[str, Any]]) -> str:
    """The table as Markdown (docs/results.md): per probe set, accuracy and margin in points, mean ± sd."""
    probes = list(dict.fromkeys(p for row in table for p in row["probes"]))
    head = ["run", "seeds"] + [f"{p} {what}" for p in probes for what in ("acc %", "margin (points)")] + ["train"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    from mtssl.train.logging import duration

    for row in table:
        cells = [row["run"], ",".join(map(str, row["done"])) or "-"]
        for p in probes:
            cell = row["probes"].get(p, {})
            cells += [
                points(cell.get("acc"), cell.get("acc_spread")),
                points(cell.get("margin"), cell.get("margin_spread"), True),
            ]
        cells.append(duration(row["train_s"]) if row["train_s"] else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_table(out: Path, table: list[dict[str, Any]]) -> Path:
    path = out / "table.md"
    path.write_text(markdown(table) + "\n")
    return path
