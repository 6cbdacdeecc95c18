"""A sweep's spec: the shard root, options common to every run, the named runs, the seeds, the probe sets.

```yaml
shards: shards/
common: {preset: cpu}
runs:
  relpos-alone: {tasks: relpos}
  all-lasso: {tasks: "relpos,color,exemplar,motion"}
  all-naive: {tasks: "relpos,color,exemplar,motion", lasso: false}
seeds: [0, 1]
probe:
  flowers5: {images: ../shared/data/flowers5, split: 0.5}
```

Run options are ``mtssl-train``'s by their snake_case names (the names of a ``--config`` file), checked here
by the same reader, so a misspelt option fails before anything runs. A run may name the shard sets it
``needs`` (``needs: [rotation]``): without them under ``shards`` it is left out with a note instead of
failing. Probe options are ``mtssl-eval probe``'s (``size``, ``random_seeds``, ``knn_k``, ...); a probe
set is ``{images: DIR, split: 0.5}`` or ``{train: DIR, val: DIR}``. Relative paths are relative to the
spec file's folder. ``resources: {cpus: N, gpus: M}`` sets what each run holds (default: the machine's
CPUs over ``--parallel``, and one GPU per run where there are GPUs).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mtssl.contract.locations import is_url
from mtssl.train.config import ConfigError
from mtssl.train.config_file import coerce_options

RUN_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
SPEC_KEYS = ("shards", "common", "runs", "seeds", "probe", "resources")
PROBE_OPTIONS = {  # mtssl-eval probe's options a spec may set (the data's, the protocol's), and their types
    "images": str,
    "train": str,
    "val": str,
    "split": float,
    "seed": int,
    "size": int,
    "random_seeds": int,
    "knn_k": int,
    "feature_dims": int,
    "eval_l1": float,
    "norms": str,
    "batch_size": int,
    "device": str,
    "cache_dir": str,
}
PATH_OPTIONS = ("images", "train", "val", "cache_dir")


class SpecError(ValueError):
    """The spec file is unreadable or names something that does not exist; one line."""


@dataclass(frozen=True)
class RunSpec:
    """One named run of the grid: its ``mtssl-train`` options and the shard sets it needs."""

    name: str
    options: dict[str, Any]
    needs: tuple[str, ...] = ()
    seeds: tuple[int, ...] = ()  # this run's own seeds, instead of the spec's


@dataclass(frozen=True)
class SweepSpec:
    shards: str
    common: dict[str, Any]
    runs: tuple[RunSpec, ...]
    seeds: tuple[int, ...]
    probes: dict[str, dict[str, Any]] = field(default_factory=dict)
    resources: dict[str, float] = field(default_factory=dict)
    source: str = ""

    def options_of(self, run: RunSpec, seed: int) -> dict[str, Any]:
        """The run's ``mtssl-train`` options: common, then the run's own, then the shards and the seed."""
        return {**self.common, **run.options, "shards": self.shards, "seed": seed}


def read_spec(path: Path, shards: str | None = None) -> SweepSpec:
    """Read and check a spec file; ``shards`` (the command line's ``--shards``) replaces the file's."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise SpecError(f"{path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise SpecError(f"{path}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    return parse_spec(data, path.parent, shards, str(path))


def parse_spec(data: Any, base: Path, shards: str | None = None, source: str = "the spec") -> SweepSpec:
    if not isinstance(data, dict):
        raise SpecError(f"{source}: a spec is a mapping with {', '.join(SPEC_KEYS)}")
    unknown = sorted(set(data) - set(SPEC_KEYS))
    if unknown:
        raise SpecError(f"{source}: unknown key(s) {', '.join(map(str, unknown))}; a spec has {', '.join(SPEC_KEYS)}")
    root = shards or data.get("shards")
    if not root:
        raise SpecError(f"{source}: no shards (the folder or URL of the shard sets): add `shards:` or pass --shards")
    common = train_options(data.get("common") or {}, f"{source}: common")
    for reserved in ("shards", "seed", "out"):
        if reserved in common:
            raise SpecError(f"{source}: common sets {reserved}, which the sweep sets for every run")
    runs = tuple(run_spec(name, options, source) for name, options in (data.get("runs") or {}).items())
    if not runs:
        raise SpecError(f"{source}: no runs: add `runs:` with at least one named run")
    seeds = seed_list(data.get("seeds", [0]), source) or (0,)
    probes = {str(k): probe_spec(str(k), options, base, source) for k, options in (data.get("probe") or {}).items()}
    return SweepSpec(
        shards=local_or_url(str(root), base if not shards else Path.cwd()),
        common=common,
        runs=runs,
        seeds=seeds,
        probes=probes,
        resources=resource_spec(data.get("resources") or {}, source),
        source=source,
    )


def seed_list(seeds: Any, where: str) -> tuple[int, ...]:
    seeds = [seeds] if isinstance(seeds, int) and not isinstance(seeds, bool) else seeds
    if not isinstance(seeds, list) or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds):
        raise SpecError(f"{where}: seeds is a list of integers >= 0, got {seeds!r}")
    return tuple(dict.fromkeys(seeds))


def train_options(options: Any, where: str) -> dict[str, Any]:
    """``mtssl-train`` options by snake_case name, checked by name and type (``--config``'s reader)."""
    if not isinstance(options, dict):
        raise SpecError(f"{where}: a mapping of mtssl-train options, got {options!r}")
    try:
        return coerce_options(options, where)
    except ConfigError as exc:
        raise SpecError(str(exc)) from None


def run_spec(name: Any, options: Any, source: str) -> RunSpec:
    name = str(name)
    if not RUN_NAME.match(name):
        raise SpecError(f"{source}: run name {name!r}: lower-case letters, digits, '.', '_' and '-' only")
    options = dict(options or {})
    needs = options.pop("needs", ())
    needs = (needs,) if isinstance(needs, str) else tuple(needs)
    seeds = seed_list(options.pop("seeds", []), f"{source}: run {name}")
    parsed = train_options(options, f"{source}: run {name}")
    for reserved in ("shards", "seed", "out"):
        if reserved in parsed:
            raise SpecError(f"{source}: run {name} sets {reserved}, which the sweep sets for every run")
    return RunSpec(name, parsed, needs, seeds)


def probe_spec(name: str, options: Any, base: Path, source: str) -> dict[str, Any]:
    where = f"{source}: probe {name}"
    if not RUN_NAME.match(name):
        raise SpecError(f"{where}: lower-case letters, digits, '.', '_' and '-' only")
    if not isinstance(options, dict):
        raise SpecError(f"{where}: a mapping like {{images: DIR, split: 0.5}} or {{train: DIR, val: DIR}}")
    unknown = sorted(set(options) - set(PROBE_OPTIONS))
    if unknown:
        raise SpecError(f"{where}: unknown option(s) {', '.join(unknown)}; probe options: {', '.join(PROBE_OPTIONS)}")
    if ("images" in options) == ("train" in options or "val" in options) or (
        "images" not in options and not {"train", "val"} <= set(options)
    ):
        raise SpecError(f"{where}: give either images (and split) or both train and val")
    out = {}
    for key, value in options.items():
        kind = PROBE_OPTIONS[key]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise SpecError(f"{where}: {key} takes {kind.__name__}, got {value!r}")
        if key in PATH_OPTIONS:
            value = local_or_url(value, base)
            if key != "cache_dir" and not Path(value).is_dir():
                raise SpecError(f"{where}: {key} {value} is not a folder")
        out[key] = value
    return out


def resource_spec(resources: Any, source: str) -> dict[str, float]:
    if not isinstance(resources, dict) or set(resources) - {"cpus", "gpus"}:
        raise SpecError(f"{source}: resources is {{cpus: N, gpus: M}}, got {resources!r}")
    if not all(isinstance(v, int | float) and not isinstance(v, bool) and v >= 0 for v in resources.values()):
        raise SpecError(f"{source}: resources are numbers >= 0, got {resources!r}")
    return {k: float(v) for k, v in resources.items()}


def local_or_url(value: str, base: Path) -> str:
    """A URL as is; a local path made absolute against ``base`` (the spec's folder)."""
    if is_url(value):
        return value
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else (base / path).resolve())
