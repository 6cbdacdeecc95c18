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

DATA, NET, OPT, RUN = "Data", "Network", "Optimisation", "Run"  # the help's panels


def option(
    default: Any,
    help: str,  # noqa: A002 - the CLI's word
    panel: str,
    *,
    resume: bool = False,
    choices: tuple | None = None,
    flag: str | None = None,
    metavar: str | None = None,
    low: float | None = None,
    high: float | None = None,
) -> Any:
    """A ``TrainConfig`` field with everything the CLI and the resume rule need, declared once: its help and
    panel, whether ``--resume`` may change it (``resume``), its fixed ``choices`` (shown as ``<a|b>``,
    refused otherwise), its flag when not ``--field-name``, its range (``low``/``high``)."""
    meta = {"help": help, "panel": panel, "resume": resume, "choices": choices, "flag": flag, "metavar": metavar}
    meta |= {"low": low, "high": high}
    if isinstance(default, dict):
        return field(default_factory=dict, metadata=meta)
    return field(default=default, metadata=meta)


class ConfigError(ValueError):
    """An option is invalid, or contradicts the run being resumed."""


@dataclass(frozen=True)
class TrainConfig:
    """A training run: every option of ``mtssl-train`` (the CLI is made from these fields, see
    ``mtssl.train.cli``). Lists become tuples; ``task_batch`` and ``task_options`` are per-task overrides.
    Comments give each default's source (src: the paper or method.md; ours: chosen here)."""

    # ---- data
    shards: str = option(
        "shards", "Folder or URL (s3://bucket/prefix) of the shard sets, found by their manifest.json.", DATA,
        resume=True, metavar="DIR|URL",  # the folders may move; the manifests' hashes must still match
    )  # fmt: skip
    out: str = option(
        "runs/mtssl", "Run folder: checkpoints, trunk.pt, log.jsonl, config.json.", RUN, resume=True, metavar="DIR"
    )
    tasks: tuple[str, ...] | None = option(
        None, "Comma-separated subset of tasks; default: every set found.", DATA, metavar="TASK,..."
    )
    batch_size: int = option(32, "Mini-batch per task and rank.", DATA, low=1)  # ours
    task_batch: dict[str, int] = option({}, "Per-task batch, TASK=N (repeatable).", DATA, metavar="TASK=N")
    workers: int = option(4, "DataLoader workers per rank (all tasks).", DATA, resume=True, low=0)
    shuffle_buffer: int = option(500, "Shuffle buffer per task and worker, in samples.", DATA, low=1)
    cache_dir: str | None = option(
        None, "Keep a local copy of each shard read from a bucket here, for later epochs.", DATA
    )
    jpeg_decode: str = option(
        "cpu", "Where JPEGs are decoded: cpu (loader workers) or device (nvJPEG on CUDA).", DATA,
        resume=True, choices=("cpu", "device"),
    )  # fmt: skip
    verify: bool = option(False, "Check every shard's md5 against its manifest first.", DATA, resume=True)
    check_shards: bool = option(
        True, "Check each shard's md5 as it is read; skip and count a damaged one.", DATA, resume=True
    )
    max_bad_fraction: float = option(
        0.01, "Stop when more than this share of a task's shards is damaged (always when all are).", DATA,
        resume=True, low=0.0, high=1.0,
    )  # fmt: skip
    val_shards: int = option(1, "Shards of every set held out for validation (none if < 3).", DATA, low=0)
    val_every: int = option(100, "Validation loss and metric every N steps.", RUN, resume=True, low=1)
    val_batches: int = option(4, "Validation mini-batches per task.", DATA, low=0)
    early_stop: int = option(
        0, "Stop training a task once its validation loss stays above its best (by --early-stop-margin) for N "
        "validations in a row: it memorises its shards. 0: never.", RUN, low=0,
    )  # fmt: skip
    early_stop_margin: float = option(
        0.2, "How far above its best validation loss counts, as a share (0.2: 20%).", RUN, low=0.0
    )
    # ---- network (mtssl.model.NetworkConfig)
    depth: int = option(101, "Trunk depth (paper: 101).", NET, choices=(18, 50, 101))  # src: the paper's trunk
    width: int = option(64, "Trunk root width (paper: 64).", NET, low=1)  # src: slim
    input_mode: str = option("harmonized", "harmonized (L for every task) or native.", NET, choices=MODES)  # ours
    lasso: bool = option(True, "Learn each task's mix of block-3 units (off: naive trunk).", NET)
    l1: float = option(1e-4, "L1 penalty on the lasso weights.", NET)  # ours, see NetworkConfig
    task_options: dict[str, dict[str, Any]] = option(
        {}, "Task option, TASK.FIELD=VALUE (repeatable): head widths, crops, the stored sides the run expects; "
        "e.g. relpos.patch_dim=512, relpos.patch_size=96, motion.crop=160.", NET,
        flag="--task-opt", metavar="TASK.FIELD=VALUE",
    )  # fmt: skip
    augment: bool = option(
        True, "Fresh crops and flips per step (the tasks' crop/flip options); off: stored samples.", DATA
    )
    # ---- optimisation
    steps: int = option(100_000, "Training steps (optimizer steps).", OPT, resume=True, low=1)
    accumulate: int = option(
        1, "Micro-batches per optimizer step (gradient accumulation): the batch of N x --batch-size.", OPT, low=1
    )
    optimizer: str = option("rmsprop", "rmsprop (paper), sgd or adamw.", OPT, choices=OPTIMIZERS)  # src: the paper
    lr: float = option(1e-3, "Peak learning rate.", OPT)  # ours
    momentum: float = option(0.9, "Momentum of rmsprop and sgd.", OPT)  # src: TF-slim rmsprop_momentum
    rmsprop_decay: float = option(0.9, "RMSProp decay of the squared-gradient average.", OPT)  # src: TF-slim
    eps: float | None = option(None, "Optimizer epsilon; default 1e-3 for rmsprop, 1e-8 for adamw.", OPT)
    weight_decay: float = option(1e-4, "Weight decay of conv and linear weights.", OPT)  # ours
    warmup_steps: int = option(1000, "Linear learning-rate warm-up from 0.", OPT, low=0)  # ours
    decay: str = option("cosine", "Learning-rate decay after warm-up: cosine, step or none.", OPT, choices=DECAYS)
    final_lr: float = option(0.0, "Learning rate at the last step (cosine).", OPT)
    step_every: int = option(30_000, "Step decay: steps between drops.", OPT, low=1)
    step_gamma: float = option(0.1, "Step decay: factor per drop.", OPT)
    clip_grad: float | None = option(None, "Clip the global gradient norm to this.", OPT)
    # ---- run
    preset: str = option(
        "paper", "Defaults to start from: paper (the paper's model) or cpu (learns in 30 min on 2 cores).", RUN,
        choices=("paper", "cpu"),
    )  # fmt: skip
    seed: int = option(0, "Seed of the streams, augmentations and initialisation.", RUN)
    device: str = option(
        "auto", "auto (CUDA when available), cpu, cuda or cuda:N; checked before any work.", RUN,
        resume=True, metavar="DEVICE",
    )  # fmt: skip
    amp: bool = option(True, "bf16 autocast on CUDA.", RUN)
    channels_last: bool = option(True, "channels-last memory format on CUDA.", RUN)
    compile: bool = option(False, "torch.compile the trunk and heads.", RUN, resume=True)
    distributed: str = option(
        "all-tasks", "Under torchrun: all-tasks (every rank every task) or task-per-rank (the paper's).", RUN,
        choices=DIST_MODES,
    )  # fmt: skip
    save_every: int = option(1000, "Checkpoint every N steps (the data streams run on across it).", RUN, low=1)
    stream_segment: int = option(
        0, "Restart the data streams every N steps (0: only at the start and at a resume); a resume from a "
        "checkpoint at a multiple of N repeats the uninterrupted run's batches.", RUN, resume=True, low=0,
    )  # fmt: skip
    keep: int = option(2, "Checkpoints kept.", RUN, resume=True, low=1)
    log_every: int = option(20, "A log.jsonl record every N steps.", RUN, resume=True, low=1)
    progress: bool | None = option(
        None, "Progress bar with rate and ETA on stderr (default: when stderr is a terminal; else a line per "
        "log record).", RUN, resume=True,
    )  # fmt: skip
    tensorboard: bool = option(
        False, "Also write the log's scalars and the lasso heat map to <out>/tensorboard/ for TensorBoard "
        "(needs the tensorboard package: the mtssl extra of that name).", RUN, resume=True,
    )  # fmt: skip

    def __post_init__(self) -> None:
        for f in fields(self):
            check_field(f, getattr(self, f.name))
        from mtssl.model.trunk import UNITS  # these import torch: only once a config is made, not for --help
        from mtssl.tasks import TASKS

        check(set(UNITS) == set(fields_by_name()["depth"].metadata["choices"]), "the CLI's depths are the trunk's")
        check(valid_device(self.device), f"--device must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        unknown = sorted(set(self.tasks or ()) - set(TASKS)) + sorted(set(self.task_batch) - set(TASKS))
        check(not unknown, f"unknown task(s) {unknown}; tasks are {', '.join(TASKS)}")
        check(self.tasks is None or len(self.tasks) > 0, "--tasks must name at least one task")
        check(all(b >= 1 for b in self.task_batch.values()), "every --task-batch must be at least 1")
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
        data = moved_to_tasks(json.loads(text))
        known = {f.name for f in fields(cls)}
        return cls(**{k: tuplify(v) for k, v in data.items() if k in known})


# Run options that became task options (issue 25): a run saved with them (config.json, a checkpoint's config)
# loads with their values in ``task_options``. ``--patch-size`` checked relpos patches and exemplar views.
MOVED_TO_TASKS = {
    "patch_size": (("relpos", "patch_size"), ("exemplar", "view_size")),
    "motion_crop": (("motion", "crop"),),
}


def moved_to_tasks(data: dict[str, Any]) -> dict[str, Any]:
    """A saved config's JSON with the moved options (:data:`MOVED_TO_TASKS`) in its tasks' options."""
    options = {task: dict(values) for task, values in data.get("task_options", {}).items()}
    for old, targets in MOVED_TO_TASKS.items():
        if data.get(old) is None:
            continue
        for task, name in targets:
            if data.get("tasks") is None or task in data["tasks"]:
                options.setdefault(task, {}).setdefault(name, data[old])
    return {**data, "task_options": options}


def tuplify(value: Any) -> Any:
    """JSON lists back to tuples, at any depth (frozen configs hold tuples)."""
    if isinstance(value, list):
        return tuple(tuplify(v) for v in value)
    if isinstance(value, dict):
        return {k: tuplify(v) for k, v in value.items()}
    return value


def flag_of(f: Any) -> str:
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def fields_by_name() -> dict[str, Any]:
    return {f.name: f for f in fields(TrainConfig)}


def check_field(f: Any, value: Any) -> None:
    """A field's value against its declared choices and range (one line naming the flag)."""
    meta, flag = f.metadata, flag_of(f)
    if meta.get("choices") and value not in meta["choices"]:
        raise ConfigError(f"{flag} must be one of {', '.join(map(str, meta['choices']))}, got {value!r}")
    if value is None or not isinstance(value, int | float) or isinstance(value, bool):
        return
    if meta.get("low") is not None and value < meta["low"]:
        raise ConfigError(f"{flag} must be at least {meta['low']}, got {value}")
    if meta.get("high") is not None and value > meta["high"]:
        raise ConfigError(f"{flag} must be at most {meta['high']}, got {value}")


# Options a resumed run may change (declared with resume=True); any other given on the command line must
# equal the saved one.
RESUME_MAY_CHANGE = frozenset(f.name for f in fields(TrainConfig) if f.metadata.get("resume"))


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
        except (TypeError, ValueError) as exc:  # a wrong type, or a value the head config refuses
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
