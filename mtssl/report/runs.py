"""What a report reads from a run folder: its config, its log, its probe files and its shard sets.

Everything is read leniently: a run still training has no probe file, a run just started has no log, a
torn last log line is skipped. What is missing is recorded in :attr:`Run.missing` for the page to say,
never raised, except for a folder that is not a run at all (:class:`NotARunError`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LOG_FILE = "log.jsonl"  # the trainer's names (mtssl.train.logging, mtssl.train.loop)
CONFIG_FILE = "config.json"
PROBE_GLOB = "probe-*.json"


class NotARunError(ValueError):
    """A folder with neither ``log.jsonl`` nor ``config.json``."""


@dataclass
class ShardSet:
    """One shard set a run trained on; ``preview`` is None when the set has no ``preview.png``."""

    task: str
    folder: Path
    exists: bool
    preview: Path | None
    samples: int | None = None


@dataclass
class Probe:
    """One ``probe-*.json``; ``error`` is set (and ``data`` empty) when the file could not be read."""

    path: Path
    dataset: str
    data: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


@dataclass
class Run:
    name: str
    path: Path
    config: dict[str, Any] | None
    records: list[dict[str, Any]]  # every parsed log line, in order
    probes: list[Probe]
    shard_sets: list[ShardSet]
    missing: list[str] = field(default_factory=list)

    @property
    def train(self) -> list[dict[str, Any]]:
        """The training records: those with a total ``loss``."""
        return [r for r in self.records if "loss" in r]

    @property
    def last_step(self) -> int | None:
        steps = [r["step"] for r in self.records if isinstance(r.get("step"), int | float)]
        return int(steps[-1]) if steps else None


def load_run(path: Path, name: str | None = None) -> Run:
    """Read one run folder; raises :class:`NotARunError` if it holds neither log nor config."""
    path = Path(path)
    log, cfg = path / LOG_FILE, path / CONFIG_FILE
    if not path.is_dir() or not (log.exists() or cfg.exists()):
        raise NotARunError(f"{path} is not a run folder (no {LOG_FILE} and no {CONFIG_FILE})")
    missing: list[str] = []
    config = _read_json(cfg, missing) if cfg.exists() else None
    if config is None and not cfg.exists():
        missing.append(f"no {CONFIG_FILE}: options and shard previews unknown")
    records = read_records(log) if log.exists() else []
    if not log.exists():
        missing.append(f"no {LOG_FILE} yet: no curves and no lasso weights")
    elif not any("loss" in r for r in records):
        missing.append(f"{LOG_FILE} has no training record yet")
    shard_sets = find_shard_sets(config, path) if config else []
    return Run(name or path.resolve().name, path, config, records, load_probes(path), shard_sets, missing)


def read_records(path: Path) -> list[dict[str, Any]]:
    """The log's JSON objects; unparsable lines (a torn last line from a crash) are skipped."""
    out = []
    for line in Path(path).read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            out.append(record)
    return out


def load_probes(run: Path) -> list[Probe]:
    """Every ``probe-*.json`` of the run, sorted by file name; a broken file becomes a Probe with ``error``."""
    probes = []
    for file in sorted(Path(run).glob(PROBE_GLOB)):
        fallback = file.stem.removeprefix("probe-")
        try:
            data = json.loads(file.read_text())
            if not isinstance(data, dict) or not isinstance(data.get("sources"), dict):
                raise ValueError("no 'sources' table")
            probes.append(Probe(file, str(data.get("dataset") or fallback), data))
        except (OSError, ValueError) as exc:
            probes.append(Probe(file, fallback, error=f"{type(exc).__name__}: {exc}"))
    return probes


def find_shard_sets(config: dict[str, Any], run: Path) -> list[ShardSet]:
    """The shard sets named by the config: ``<shards>/<task>/`` for each task (every set found if null)."""
    root = resolve_shards(str(config.get("shards") or "shards"), run)
    tasks = config.get("tasks")
    if tasks is None:
        found = root.iterdir() if root.is_dir() else []
        tasks = sorted(p.name for p in found if (p / "manifest.json").exists())
    return [_shard_set(str(task), root / str(task)) for task in tasks]


def resolve_shards(shards: str, run: Path) -> Path:
    """A relative ``shards`` path was relative to where training ran: try here, then the run's parents."""
    given = Path(shards).expanduser()
    if given.is_absolute():
        return given
    for base in (Path.cwd(), *Path(run).resolve().parents):
        if (base / given).is_dir():
            return base / given
    return given


def _shard_set(task: str, folder: Path) -> ShardSet:
    manifest = folder / "manifest.json"
    preview = folder / "preview.png"
    return ShardSet(task, folder, manifest.exists(), preview if preview.is_file() else None, _samples(manifest))


def _samples(manifest: Path) -> int | None:
    try:
        return sum(int(s["nsamples"]) for s in json.loads(manifest.read_text())["shardlist"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _read_json(path: Path, missing: list[str]) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        missing.append(f"{path.name} unreadable ({exc})")
        return None
    return data if isinstance(data, dict) else None
