"""What a sweep has to do: one item per (run, seed), its folder, its resolved config, and what is left of it.

An item's run folder is ``OUT/runs/<name>-s<seed>``, a normal ``mtssl-train`` run folder; its options are
written to ``OUT/configs/<name>-s<seed>.yaml`` (a ``--config`` file) and its output to
``OUT/logs/<name>-s<seed>.log``. What is left is read from the folder, so a rerun of the same command
does nothing for a finished run or probe and resumes an interrupted run from its newest checkpoint; a
folder trained with other options than the spec's is refused (one line naming the options).
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from mtssl.sweep.spec import RunSpec, SpecError, SweepSpec
from mtssl.train.config import TrainConfig
from mtssl.train.config_file import config_text, resolve_options

# Options that do not change what a run computes: a finished run trained with other values is still the
# spec's run (where its files are, how it logs and checkpoints, how many loader workers fed it).
NOT_COMPARED = frozenset(
    {"shards", "out", "workers", "progress", "log_every", "save_every", "keep", "verify", "check_shards"}
    | {"cache_dir", "tensorboard", "device", "compile", "jpeg_decode"}
)


@dataclass(frozen=True)
class Item:
    """One (run, seed) of the sweep."""

    name: str  # "<run>-s<seed>"
    run: str
    seed: int
    folder: Path
    config_file: Path
    log_file: Path
    cfg: TrainConfig
    probes: dict[str, dict[str, Any]]

    def probe_file(self, probe: str) -> Path:
        return self.folder / f"probe-{probe}.json"

    @property
    def trained(self) -> bool:
        """The run finished: its trunk exported and its log's end record written."""
        return (self.folder / "trunk.pt").is_file() and ended(self.folder / "log.jsonl", self.cfg.steps)

    @property
    def started(self) -> bool:
        return any(self.folder.glob("ckpt-*.pt"))

    def probes_left(self) -> list[str]:
        return [p for p in self.probes if not self.probe_file(p).is_file()]

    @property
    def done(self) -> bool:
        return self.trained and not self.probes_left()

    def to_plain(self) -> dict[str, Any]:
        """What a Ray worker needs to run the item (plain values only)."""
        return {
            "name": self.name,
            "folder": str(self.folder),
            "config_file": str(self.config_file),
            "log_file": str(self.log_file),
            "steps": self.cfg.steps,
            "probes": {p: self.probes[p] for p in self.probes},
        }


def ended(log: Path, steps: int) -> bool:
    if not log.is_file():
        return False
    for line in reversed(log.read_text().splitlines()):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if record.get("event") == "end":
            return int(record.get("step", -1)) == steps
    return False


def plan(spec: SweepSpec, out: Path, available: set[str] | None = None) -> tuple[list[Item], list[str]]:
    """The sweep's items, and a note per run left out because a shard set it ``needs`` is not there."""
    items, notes = [], []
    for run in spec.runs:
        missing = sorted(set(run.needs) - available) if available is not None else []
        if missing:
            notes.append(f"{run.name}: left out, no {', '.join(missing)} shard set under {spec.shards}")
            continue
        items += [make_item(spec, run, seed, out) for seed in run.seeds or spec.seeds]
    return items, notes


def select(items: list[Item], names: list[str]) -> list[Item]:
    """The items of the runs (``all-lasso``) or single items (``all-lasso-s1``) named; all when none is."""
    if not names:
        return items
    known = {item.run for item in items} | {item.name for item in items}
    for name in names:
        if name not in known:
            close = difflib.get_close_matches(name, sorted(known), n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            runs = ", ".join(dict.fromkeys(item.run for item in items))
            raise SpecError(f"--only {name}: no such run in the spec{hint}; runs: {runs}")
    return [item for item in items if item.run in names or item.name in names]


def make_item(spec: SweepSpec, run: RunSpec, seed: int, out: Path) -> Item:
    name = f"{run.name}-s{seed}"
    folder = out / "runs" / name
    options = spec.options_of(run, seed) | {"out": str(folder)}
    try:
        cfg = resolve_options(options)
    except ValueError as exc:  # ConfigError: an option's value the trainer refuses
        raise SpecError(f"{spec.source}: run {run.name}: {exc}") from None
    return Item(
        name, run.name, seed, folder, out / "configs" / f"{name}.yaml", out / "logs" / f"{name}.log", cfg, spec.probes
    )


def conflicts(item: Item) -> list[str]:
    """Options whose value in the item's existing run folder differs from the spec's ("lr 0.001 -> 0.0002")."""
    saved_file = item.folder / "config.json"
    if not saved_file.is_file():
        return []
    saved = TrainConfig.from_json(saved_file.read_text())
    return [
        f"{f.name} {getattr(saved, f.name)!r} (spec: {getattr(item.cfg, f.name)!r})"
        for f in fields(TrainConfig)
        if f.name not in NOT_COMPARED
        and getattr(item.cfg, f.name) is not None  # None: "found" or "automatic", resolved by the run itself
        and getattr(saved, f.name) != getattr(item.cfg, f.name)
    ]


def check_folders(items: list[Item]) -> None:
    """Refuse, in one line, a sweep whose folders hold runs trained with other options."""
    for item in items:
        changed = conflicts(item)
        if changed:
            raise SpecError(
                f"{item.folder} was trained with other options than the spec's: {'; '.join(changed)}. "
                "Remove that folder to train it again, or give the sweep another --out"
            )


def write_configs(items: list[Item]) -> None:
    """Each item's ``--config`` file (rewritten every time: it is the spec's, not the run's record)."""
    for item in items:
        item.config_file.parent.mkdir(parents=True, exist_ok=True)
        item.log_file.parent.mkdir(parents=True, exist_ok=True)
        text = f"# mtssl-sweep: {item.name}, resolved from the spec\n" + config_text(item.cfg, drop_none=True)
        if not item.config_file.is_file() or item.config_file.read_text() != text:
            item.config_file.write_text(text)
