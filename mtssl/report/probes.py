"""Numbers read from ``probe-*.json`` (written by ``mtssl-eval probe``), shared by the tables and the bar chart.

A source's score is the better of its linear and k-NN accuracies, its random-init score the better of
the two random-trunk means, and its margin the difference: the same comparison as the file's ``best``.
"""

from __future__ import annotations

import math
from typing import Any

from mtssl.report.runs import Run

CLASSIFIERS = ("linear", "knn")


def number(value: Any) -> float | None:
    """A finite float, or None for anything else (missing keys, nulls, NaN)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def trained(source: dict[str, Any]) -> tuple[float | None, str | None]:
    """(best accuracy, classifier) of the trained trunk on one source."""
    scored = [(number(source.get(c)), c) for c in CLASSIFIERS]
    scored = [(a, c) for a, c in scored if a is not None]
    return max(scored) if scored else (None, None)


def random_init(source: dict[str, Any]) -> float | None:
    """The better random-init mean of one source (None when the probe ran without random trunks)."""
    values = [v for v in (number(source.get(f"random_{c}")) for c in CLASSIFIERS) if v is not None]
    return max(values) if values else None


def margin(source: dict[str, Any]) -> float | None:
    acc, rnd = trained(source)[0], random_init(source)
    return None if acc is None or rnd is None else acc - rnd


def datasets(runs: list[Run]) -> list[str]:
    """Every dataset probed in any run, in order of first appearance."""
    return list(dict.fromkeys(p.dataset for run in runs for p in run.probes if not p.error))


def probe_of(run: Run, dataset: str) -> dict[str, Any] | None:
    """The run's (last) readable probe file for ``dataset``."""
    found = [p.data for p in run.probes if p.dataset == dataset and not p.error]
    return found[-1] if found else None


def best(probe: dict[str, Any]) -> tuple[float | None, str, float | None]:
    """(accuracy, 'source / classifier', margin) from the file's ``best`` block, recomputed when absent."""
    block = probe.get("best") or {}
    if number(block.get("acc")) is not None:
        where = f"{block.get('source', '?')} / {block.get('classifier', '?')}"
        return number(block["acc"]), where, number(block.get("margin"))
    scored = [(trained(s)[0], name, trained(s)[1], random_init(s)) for name, s in _sources(probe).items()]
    scored = [row for row in scored if row[0] is not None]
    if not scored:
        return None, "-", None
    acc, name, clf, _ = max(scored)
    randoms = [r for *_, r in scored if r is not None]
    return acc, f"{name} / {clf}", acc - max(randoms) if randoms else None


def bar_rows(runs: list[Run], dataset: str) -> dict[str, dict[str, tuple[float, float | None]]]:
    """run -> source -> (accuracy, random-init accuracy), the bar chart's numbers for one dataset."""
    rows: dict[str, dict[str, tuple[float, float | None]]] = {}
    for run in runs:
        probe = probe_of(run, dataset)
        if probe is None:
            continue
        rows[run.name] = {}
        for name, source in _sources(probe).items():
            acc = trained(source)[0]
            if acc is not None:
                rows[run.name][name] = (acc, random_init(source))
    return rows


def _sources(probe: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in (probe.get("sources") or {}).items() if isinstance(v, dict)}
