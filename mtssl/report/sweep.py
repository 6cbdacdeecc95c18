"""The sweep view of a report: runs grouped over their seeds (``mtssl-sweep``'s ``<run>-s<seed>`` folders).

One table (per run: seeds, per probe set the best accuracy and the margin over random init as mean ± sd
over seeds, the training wall time), one bar chart of the margins with each seed's dot, each task's
validation loss of every run overlaid, and the lasso matrices side by side. Numbers come from the run
folders (probe files, logs) and from the sweep's ``sweep.json`` (wall times, failures).
"""

from __future__ import annotations

import json
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mtssl.eval.percent import percent_spread
from mtssl.report import probes
from mtssl.report.runs import LOG_FILE, Run, read_records

SEEDED = re.compile(r"^(?P<run>.+)-s(?P<seed>\d+)$")
RECORD_FILE = "sweep.json"


@dataclass
class Group:
    """One named run of a sweep and its seeds' run folders."""

    name: str
    runs: list[Run] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)
    train_s: list[float] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def values(self, dataset: str, what: str) -> list[float]:
        """Per seed: the best accuracy (``acc``) or the margin over random init (``margin``) on ``dataset``."""
        out = []
        for run in self.runs:
            probe = probes.probe_of(run, dataset)
            if probe is not None:
                acc, _, gap = probes.best(probe)
                value = acc if what == "acc" else gap
                out += [value] if value is not None else []
        return out


def stats(values: list[float]) -> tuple[float | None, float | None]:
    """(mean, sample standard deviation); the deviation is None below two values."""
    mean = statistics.fmean(values) if values else None
    return mean, statistics.stdev(values) if len(values) > 1 else None


def train_seconds(entry: dict[str, Any]) -> float | None:
    """An item's training wall time, summed over its attempts: the sweep's record, or the run's own end
    record (``wall_s``, the time of the attempt that finished) when no attempt was recorded (the driver
    stopped between the end of training and its record), or both when only an interrupted one was."""
    recorded = float(entry.get("train_s") or 0.0)
    if recorded and entry.get("status") != "interrupted":
        return recorded  # the record covers every attempt: no need to read the run's log
    last = last_wall_s(Path(entry["folder"])) if entry.get("folder") else None
    return recorded + (last or 0.0) or None


def last_wall_s(folder: Path) -> float | None:
    """The training time of the attempt that finished the run in ``folder`` (its log's end record)."""
    log = folder / LOG_FILE
    ends = (
        [r["wall_s"] for r in read_records(log) if r.get("event") == "end" and r.get("wall_s")] if log.is_file() else []
    )
    return float(ends[-1]) if ends else None


def read_record(folder: Path) -> dict[str, Any]:
    path = Path(folder) / RECORD_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {"items": {}}


def is_sweep(folder: Path) -> bool:
    return (Path(folder) / RECORD_FILE).is_file() and (Path(folder) / "runs").is_dir()


def sweep_run_folders(folder: Path) -> list[Path]:
    """The run folders of a sweep folder, in the order the sweep recorded them (then by name)."""
    record = read_record(folder)
    named = [Path(e["folder"]) for e in record.get("items", {}).values() if e.get("folder")]
    found = sorted(p for p in (Path(folder) / "runs").iterdir() if (p / "config.json").is_file())
    return [p for p in dict.fromkeys([*named, *found]) if (p / "config.json").is_file()]


def groups(runs: list[Run], record: dict[str, Any]) -> list[Group]:
    """The runs grouped by name (``<run>-s<seed>``), in order of first appearance."""
    by_name: dict[str, Group] = {}
    items = record.get("items", {})
    for run in runs:
        folder = run.path.name
        match = SEEDED.match(folder)
        name, seed = (match["run"], int(match["seed"])) if match else (folder, 0)
        group = by_name.setdefault(name, Group(name))
        group.runs.append(run)
        group.seeds.append(seed)
        entry = {"folder": str(run.path), **items.get(folder, {})}
        if (seconds := train_seconds(entry)) is not None:
            group.train_s.append(seconds)
        if entry.get("status") == "failed":
            group.failed.append(f"s{seed}: {entry.get('error', '')}")
    return list(by_name.values())


def table_rows(found: list[Group], datasets: list[str]) -> tuple[list[str], list[list[str]]]:
    from mtssl.train.logging import duration

    headers = ["run", "seeds"] + [h for d in datasets for h in (f"{d}: best accuracy", f"{d}: margin (points)")]
    headers += ["training wall time", "failed"]
    rows = []
    for group in found:
        row = [group.name, ", ".join(map(str, group.seeds))]
        for dataset in datasets:
            acc = stats(group.values(dataset, "acc"))
            gap = stats(group.values(dataset, "margin"))
            row += [percent_spread(*acc), margin_text(*gap)]
        wall = stats(group.train_s)[0]
        row += [duration(wall) if wall else "—", "; ".join(group.failed) or "—"]
        rows.append(row)
    return headers, rows


def margin_text(mean: float | None, std: float | None) -> str:
    if mean is None:
        return "—"
    return f"{100 * mean:+.1f}" + (f" ± {100 * std:.1f}" if std is not None else "")
