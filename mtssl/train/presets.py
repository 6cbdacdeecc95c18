"""Named sets of training defaults: ``--preset paper`` (the paper's model) and ``--preset cpu``.

A preset replaces the defaults of the options it names; any option given on the command line still wins
(``--task-opt`` values are merged field by field). ``paper`` is the plain ``TrainConfig`` defaults.

``cpu`` is a recipe that learns in at most 30 minutes on 2 CPU cores, found by measurement (pretraining on
shards of ``../shared/data/flowers5`` and the sample's videos, probing on flowers5; docs/results.md has
the runs): a narrow ResNet-v2-18, heads that follow it, small training crops, fresh crops and flips per
step so that a few hundred images are not memorised, and a learning rate low enough that the trunk keeps
the generic filters it starts with while the pretexts add to them.
"""

from __future__ import annotations

from typing import Any

PRESETS: dict[str, dict[str, Any]] = {
    "paper": {},
    "cpu": {
        "depth": 18,
        "width": 32,
        "batch_size": 16,
        "task_batch": {"exemplar": 32},  # more in-batch negatives: +3.5 points on the flowers5 probe (w32a -> w32b)
        "steps": 1800,  # +13.3 points over 2 seeds on the flowers5 probe (1200 steps: +9.05); ~24 min quiet
        "lr": 2e-4,  # RMSProp at the plain 1e-3 rewrites the trunk (docs/results.md): flowers5 +14.3 -> +15.3
        # at seed 0, two-seed mean +13.6; embedded photos -7.9 -> -2.0 at 224 px, -4.6 -> +3.2 at its own 128 px
        "warmup_steps": 50,
        "save_every": 600,
        "log_every": 20,
        "val_every": 100,
        "workers": 2,
        "device": "cpu",
        "task_options": {
            "relpos": {"crop": 80, "flip": True},
            "color": {"crop": 176},
            "exemplar": {"crop": 80},
            "motion": {"crop": 160},
        },
    },
}


def preset_values(name: str, given: dict[str, Any]) -> dict[str, Any]:
    """The preset's values for the options not in ``given``; ``task_options`` merged under the given ones."""
    if name not in PRESETS:
        raise KeyError(f"unknown preset {name!r}; presets are {', '.join(PRESETS)}")
    out = {key: value for key, value in PRESETS[name].items() if key not in given or key == "task_options"}
    if "task_options" in out:
        merged = {task: dict(options) for task, options in out["task_options"].items()}
        for task, options in given.get("task_options", {}).items():
            merged.setdefault(task, {}).update(options)
        out["task_options"] = merged
    return out
