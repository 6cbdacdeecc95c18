"""``mtssl-train --config FILE.yaml`` and ``--print-config``: options in a file, and the resolved config shown.

A config file is a YAML (or JSON) mapping of ``TrainConfig`` field names (the options' snake_case names:
``batch_size``, ``task_options``) to values in their natural form: ``tasks: [relpos, color]`` or
``tasks: relpos,color``, ``task_batch: {exemplar: 32}``, ``task_options: {relpos: {crop: 80}}``. A run's
``config.json`` is such a file. The order of precedence is: command line, then the file, then the
preset (which the file may name), then the defaults.
"""

from __future__ import annotations

import difflib
import typing
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any

import yaml

from mtssl.cli_style import ConfigFileError, read_config_mapping
from mtssl.train.config import ConfigError, TrainConfig, moved_to_tasks, tuplify

_WORDS = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}


def read_config_file(path: Path) -> dict[str, Any]:
    """The options a config file sets, checked by name and type; one ``ConfigError`` line otherwise."""
    try:
        data = read_config_mapping(path)
    except ConfigFileError as exc:
        raise ConfigError(str(exc)) from None
    return coerce_options(data, f"--config {path}")


def coerce_options(data: dict[str, Any], where: str) -> dict[str, Any]:
    """Options by ``TrainConfig`` field name, checked by name and type; ``where`` starts each error line."""
    data = moved_to_tasks(data) if data.keys() & {"patch_size", "motion_crop"} else dict(data)
    data.pop("patch_size", None), data.pop("motion_crop", None)  # old runs' config.json: moved to task_options
    hints = typing.get_type_hints(TrainConfig)
    unknown = sorted(set(data) - set(hints), key=str)
    if unknown:
        raise ConfigError(f"{where}: {'; '.join(unknown_key(k, hints) for k in unknown)}")
    return {key: coerce(where, key, value, hints[key]) for key, value in data.items()}


def resolve_options(typed: dict[str, Any]) -> TrainConfig:
    """The config of a run given ``typed`` options: over the preset they name (or ``paper``), over the
    defaults; as ``mtssl-train`` resolves its command line."""
    from mtssl.train.presets import preset_values

    values = {f.name: f.default_factory() if f.default is MISSING else f.default for f in fields(TrainConfig)}
    values |= typed
    try:
        values |= preset_values(values["preset"], typed)
    except KeyError as exc:
        raise ConfigError(f"--preset: {exc.args[0]}") from None
    return TrainConfig(**values)


def unknown_key(key: str, hints: dict[str, Any]) -> str:
    close = difflib.get_close_matches(str(key).replace("-", "_"), hints, n=3)
    return f"no option {key!r}" + (f" (did you mean {', '.join(close)}?)" if close else "")


def coerce(where: str, key: str, value: Any, hint: Any) -> Any:
    """A file's value in the field's type (lists -> tuples, ``"a,b"`` -> ``("a", "b")`` for ``tasks``)."""
    optional = type(None) in typing.get_args(hint)
    if value is None and optional:
        return None
    kind = next(a for a in typing.get_args(hint) if a is not type(None)) if optional else hint
    origin = typing.get_origin(kind)
    if origin is tuple:
        items = [t.strip() for t in value.split(",") if t.strip()] if isinstance(value, str) else value
        if isinstance(items, list | tuple) and all(isinstance(t, str) for t in items):
            return tuple(items)
        raise ConfigError(f"{where}: {key} takes a list of names or one comma-separated string, got {value!r}")
    if origin is dict:
        if isinstance(value, dict):
            return tuplify(value)
        raise ConfigError(f"{where}: {key} takes a mapping (e.g. {{relpos: 16}}), got {value!r}")
    ok = isinstance(value, kind) and not (kind is not bool and isinstance(value, bool))
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not ok:
        raise ConfigError(f"{where}: {key} takes {_WORDS.get(kind, kind)}, got {value!r}")
    return value


def config_text(cfg: TrainConfig, drop_none: bool = False) -> str:
    """The resolved config as YAML, itself a valid ``--config`` file; ``drop_none`` leaves out the options
    whose None means "found" or "automatic" (the tasks found, the optimizer's own epsilon), so that a
    ``--resume`` with the file does not pin them against what the run resolved."""
    plain = {f.name: plain_value(getattr(cfg, f.name)) for f in fields(cfg)}
    if drop_none:
        plain = {k: v for k, v in plain.items() if v is not None}
    return yaml.safe_dump(plain, sort_keys=False, default_flow_style=None, width=100)


def plain_value(value: Any) -> Any:
    if isinstance(value, tuple):
        return [plain_value(v) for v in value]
    if isinstance(value, dict):
        return {k: plain_value(v) for k, v in value.items()}
    return value


def sets_text(cfg: TrainConfig) -> str:
    """YAML comment lines: each shard set the run would read, its samples and its validation split."""
    from mtssl.data.shardsets import open_sets
    from mtssl.tasks import TASKS

    lines = [f"# shard sets under {cfg.shards}:"]
    for task, sset in open_sets(cfg.shards, TASKS, cfg.tasks).items():
        train, val = sset.split(cfg.val_shards)
        held = f"{len(val)} held out for validation" if val else "none held out: too few shards for validation"
        lines.append(
            f"#   {task:9s} {sset.samples:>9,} samples in {len(train) + len(val)} shards ({held})  {sset.root}"
        )
    return "\n".join(lines)


def describe(cfg: TrainConfig, sources: list[str]) -> str:
    """``--print-config``'s output: where the values came from, the config, the sets (a valid config file)."""
    head = f"# mtssl-train config, resolved from {' over '.join(sources)}; a valid --config file"
    return "\n".join([head, config_text(cfg).rstrip(), sets_text(cfg)]) + "\n"
