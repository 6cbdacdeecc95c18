"""mtssl: multi-task self-supervised visual learning (Doersch & Zisserman, ICCV 2017).

The Python API (docs/api.md); the command line is ``mtssl-data``, ``mtssl-train``, ``mtssl-eval``,
``mtssl-report`` and ``mtssl-demo``.

- ``load_trunk(path)``: a trained trunk (``RUN/trunk.pt``) with its lasso rows, ready for features;
- ``load_set(folder)`` / ``open_sets(shards, TASKS)``: checked shard sets; ``read_samples(set)``: their
  decoded samples;
- ``NetworkConfig``, ``MultiTaskNet``: the lasso multi-task network; ``TASKS``: the pretext tasks;
- ``TrainConfig``, ``run_training(cfg)``: a training run, as ``mtssl-train`` runs it.

Importing the package is cheap (no torch): each name imports its module when first used.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_HOMES = {
    "load_trunk": "mtssl.model.loading",
    "LoadedTrunk": "mtssl.model.loading",
    "load_set": "mtssl.data.shardsets",
    "open_sets": "mtssl.data.shardsets",
    "ShardSet": "mtssl.data.shardsets",
    "read_samples": "mtssl.data.reading",
    "NetworkConfig": "mtssl.model.network",
    "MultiTaskNet": "mtssl.model.network",
    "TASKS": "mtssl.tasks",
    "TrainConfig": "mtssl.train.config",
    "run_training": "mtssl.train.loop",  # mtssl.train is the trainer's package: the function has another name
}

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(import_module(_HOMES[name]), "train" if name == "run_training" else name)
    raise AttributeError(f"module 'mtssl' has no attribute {name!r}")


def __dir__() -> list[str]:  # what dir(mtssl) and help(mtssl) list
    return list(__all__)
