"""Every option of a training run, in one frozen dataclass that is resolved, saved and compared on resume.

Paper defaults and ours (src: method.md, "Training" and "Trunk"):

- trunk ResNet-v2-101 through block 3, harmonized (L) input, lasso on: the paper's headline model;
- RMSProp (src: the paper). Its settings are not in method.md. Decay 0.9 and momentum 0.9 are TF-slim's
  image-classifier defaults; learning rate 1e-3 and epsilon 1e-3 are ours, tuned on the embedded sample:
  slim's epsilon 1.0 turns RMSProp into momentum SGD at these gradient scales (the gradient is divided
  by ~1), and the exemplar loss then barely moved in our runs;
- each task's loss on its own mini-batch, summed with no hand-set weights (src: the paper);
- learning rate, warm-up, cosine decay, batch size and weight decay are ours (no values in method.md).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from mtssl.inputs import MODES

OPTIMIZERS = ("rmsprop", "sgd", "adamw")
DECAYS = ("cosine", "step", "none")
DIST_MODES = ("all-tasks", "task-per-rank")
EPS = {"rmsprop": 1e-3, "sgd": 0.0, "adamw": 1e-8}  # rmsprop: ours (see above); adamw: torch's default

# Options a resumed run may change; any other option given on the command line must equal the saved one.
RESUME_MAY_CHANGE = frozenset(
    {
        "steps",
        "log_every",
        "keep",
        "progress",
        "verify",
        "workers",
        "compile",
        "device",
        "check_shards",
        "max_bad_fraction",
        "jpeg_decode",
    }
)
RESUME_MAY_CHANGE |= {"val_every"}
RESUME_MAY_CHANGE |= {"shards", "out"}  # the folders may move; the manifests' hashes must still match


class ConfigError(ValueError):
    """An option is invalid, or contradicts the run being resumed."""


@dataclass(frozen=True)
class TrainConfig:
    """A training run. Lists become tuples; ``task_batch`` and ``task_options`` are per-task overrides."""

    # ---- data
    shards: str = "shards"
    out: str = "runs/mtssl"
    tasks: tuple[str, ...] | None = None  # None: every shard set found under ``shards``
    batch_size: int = 32  # per task, per rank (ours)
    task_batch: dict[str, int] = field(default_factory=dict)
    patch_size: int | None = None  # relpos patch / exemplar view side the run expects; None accepts the sets'
    motion_crop: int | None = None  # square crop side of motion frames; None: the frames' shorter side
    workers: int = 4  # DataLoader workers per rank (all tasks)
    shuffle_buffer: int = 500  # samples per task per worker
    cache_dir: str | None = None  # keep a local copy of every shard read from a bucket here (later epochs read it)
    jpeg_decode: str = "cpu"  # "device": loader workers hand over JPEG bytes, nvJPEG decodes them (CUDA)
    verify: bool = False  # md5 of every shard before training
    check_shards: bool = True  # md5 of every shard as the loader reads it: damaged ones are skipped, counted
    max_bad_fraction: float = 0.01  # stop when more than this share of a task's shards is damaged (mtssl.data.health)
    val_shards: int = 1  # shards of every set held out for validation (none when a set has fewer than 3)
    val_every: int = 100  # validation loss and metric of every task every N steps (and at the end)
    val_batches: int = 4  # validation mini-batches per task (the same ones every time)
    early_stop: int = 0  # a task stops training after this many validations in a row above its best (0: never)
    early_stop_margin: float = 0.2  # ... more than this share above its best validation loss (mtssl.train.early_stop)
    # ---- network (mtssl.model.NetworkConfig)
    depth: int = 101  # src: the paper's trunk
    width: int = 64  # src: slim
    input_mode: str = "harmonized"  # ours as default; both are offered (src: method.md)
    lasso: bool = True
    l1: float = 1e-4  # ours, see NetworkConfig
    task_options: dict[str, dict[str, Any]] = field(default_factory=dict)  # e.g. {"relpos": {"patch_dim": 512}}
    augment: bool = True  # fresh crops and flips per step (see mtssl.augment and each task's crop/flip options)
    # ---- optimisation
    steps: int = 100_000
    optimizer: str = "rmsprop"  # src: the paper
    lr: float = 1e-3  # ours
    momentum: float = 0.9  # rmsprop and sgd; src: TF-slim rmsprop_momentum
    rmsprop_decay: float = 0.9  # src: TF-slim rmsprop_decay
    eps: float | None = None  # None: EPS[optimizer]
    weight_decay: float = 1e-4  # ours; never on biases, norms or lasso weights
    warmup_steps: int = 1000  # ours: linear from 0
    decay: str = "cosine"  # ours
    final_lr: float = 0.0
    step_every: int = 30_000  # step decay: multiply by step_gamma every this many steps
    step_gamma: float = 0.1
    clip_grad: float | None = None  # max global gradient norm
    # ---- run
    preset: str = "paper"  # the defaults this run started from (mtssl.train.presets); options given override them
    seed: int = 0
    device: str = "auto"  # auto: cuda when available
    amp: bool = True  # bf16 autocast on CUDA
    channels_last: bool = True  # on CUDA
    compile: bool = False  # torch.compile the trunk and heads
    distributed: str = "all-tasks"
    save_every: int = 1000  # also the stream segment length (see mtssl.data.stream)
    keep: int = 2  # checkpoints kept
    log_every: int = 20
    progress: bool | None = None  # None: a progress bar when stdout is a terminal

    def __post_init__(self) -> None:
        for option, choices in (
            ("optimizer", OPTIMIZERS),
            ("decay", DECAYS),
            ("distributed", DIST_MODES),
            ("input_mode", MODES),
            ("jpeg_decode", ("cpu", "device")),
        ):
            value = getattr(self, option)
            flag = "--" + option.replace("_", "-")
            check(value in choices, f"{flag} must be one of {', '.join(choices)}, got {value!r}")
        from mtssl.model.trunk import UNITS  # these import torch: only once a config is made, not for --help
        from mtssl.tasks import TASKS

        check(self.depth in UNITS, f"--depth must be one of {', '.join(map(str, sorted(UNITS)))}, got {self.depth}")
        check(valid_device(self.device), f"--device must be auto, cpu, cuda or cuda:N, got {self.device!r}")

        unknown = sorted(set(self.tasks or ()) - set(TASKS)) + sorted(set(self.task_batch) - set(TASKS))
        check(not unknown, f"unknown task(s) {unknown}; tasks are {', '.join(TASKS)}")
        check(self.tasks is None or len(self.tasks) > 0, "--tasks must name at least one task")
        for name in ("steps", "batch_size", "save_every", "log_every", "keep", "shuffle_buffer", "val_every"):
            check(getattr(self, name) >= 1, f"--{name.replace('_', '-')} must be at least 1")
        check(all(b >= 1 for b in self.task_batch.values()), "every --task-batch must be at least 1")
        check(self.workers >= 0 and self.warmup_steps >= 0, "--workers and --warmup-steps must be >= 0")
        check(self.val_shards >= 0 and self.val_batches >= 0, "--val-shards and --val-batches must be >= 0")
        check(self.early_stop >= 0 and self.early_stop_margin >= 0, "--early-stop and its margin must be >= 0")
        check(self.lr > 0 and self.final_lr >= 0, "--lr must be > 0 and --final-lr >= 0")

    def batch_for(self, task: str) -> int:
        return self.task_batch.get(task, self.batch_size)

    @property
    def resolved_eps(self) -> float:
        return EPS[self.optimizer] if self.eps is None else self.eps

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> TrainConfig:
        data = json.loads(text)
        known = {f.name for f in fields(cls)}
        return cls(**{k: tuplify(v) for k, v in data.items() if k in known})


def tuplify(value: Any) -> Any:
    """JSON lists back to tuples, at any depth (frozen configs hold tuples)."""
    if isinstance(value, list):
        return tuple(tuplify(v) for v in value)
    if isinstance(value, dict):
        return {k: tuplify(v) for k, v in value.items()}
    return value


def valid_device(option: str) -> bool:
    """``auto`` or a device string torch can make (``cpu``, ``cuda``, ``cuda:1``, ``mps``); whether it is
    present is checked when the run starts (``mtssl.train.distributed.resolve_device``)."""
    import torch

    if option == "auto":
        return True
    try:
        torch.device(option)
    except (RuntimeError, ValueError):
        return False
    return True


def check(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def parse_task_batch(items: list[str]) -> dict[str, int]:
    """``["relpos=16", "color=8"]`` -> ``{"relpos": 16, "color": 8}``."""
    out = {}
    for item in items:
        task, sep, value = item.partition("=")
        check(bool(sep) and value.strip().isdigit(), f"--task-batch takes TASK=N, got {item!r}")
        out[task.strip()] = int(value)
    return out


def parse_task_options(items: list[str]) -> dict[str, dict[str, Any]]:
    """``["relpos.patch_dim=512", "exemplar.margin=0.3"]`` -> nested dict; values are JSON (else strings).

    Checked against the task's config dataclass, so a misspelt field fails here, not hours into a run.
    """
    from mtssl.tasks import TASKS as TASK_CLASSES

    out: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        task, dot, name = key.strip().partition(".")
        check(bool(sep) and bool(dot) and task in TASK_CLASSES, f"--task-opt takes TASK.FIELD=VALUE, got {item!r}")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        out.setdefault(task, {})[name] = tuplify(value)
    for task, options in out.items():
        known = [f.name for f in fields(TASK_CLASSES[task].config_class)]
        unknown = sorted(set(options) - set(known))
        check(not unknown, f"--task-opt {task}: no field {', '.join(unknown)}; {task}'s fields: {', '.join(known)}")
        try:
            TASK_CLASSES[task].config_from_plain(options)
        except TypeError as exc:
            raise ConfigError(f"--task-opt {task}: {exc}") from exc
    return out


def merge_for_resume(saved: TrainConfig, given: dict[str, Any]) -> TrainConfig:
    """The saved config with the options given on this command line; refuse those a resume cannot change."""
    conflicts = [
        f"--{name.replace('_', '-')} {value!r} (the run has {getattr(saved, name)!r})"
        for name, value in given.items()
        if name not in RESUME_MAY_CHANGE and value != getattr(saved, name)
    ]
    check(
        not conflicts,
        "--resume continues a run with its saved options, but this command changes "
        + "; ".join(conflicts)
        + ". Drop those options, or start a new run in another --out folder",
    )
    return replace(saved, **{k: v for k, v in given.items() if k in RESUME_MAY_CHANGE})
