"""Everything a run needs before its first step, built from its config: the checked shard sets, the
network (and its DDP wrapper), the state (restored from a checkpoint on resume), the data streams and the
held-out validation batches. ``mtssl.train.loop`` then only steps."""

from __future__ import annotations

import json
import random
import sys
from dataclasses import dataclass, replace
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from mtssl.data.device_decode import require_backend
from mtssl.data.shardsets import ShardSet, ShardSetError, check_run, manifest_hashes, open_sets
from mtssl.data.stream import StepStream, TaskSpec, fields_for, fixed_batches, make_loader
from mtssl.model import MultiTaskNet, NetworkConfig
from mtssl.tasks import TASKS as TASK_CLASSES
from mtssl.tasks.base import RunOptionError, RunOptions
from mtssl.train import distributed as ddp
from mtssl.train.checkpoint import write_text_atomic
from mtssl.train.config import ConfigError, TrainConfig
from mtssl.train.early_stop import EarlyStop
from mtssl.train.logging import LOG_FILE, RunLog
from mtssl.train.schedule import warmup_then_decay
from mtssl.train.state import TrainState, make_optimizer

ValBatches = dict[str, list[dict[str, torch.Tensor]]]


@dataclass
class Run:
    """A run ready to step: its config (tasks resolved), process, model, state and data."""

    cfg: TrainConfig
    out: Path
    env: ddp.DistEnv
    model: torch.nn.Module  # the network, or its DDP wrapper: what a step calls
    state: TrainState
    lrs: np.ndarray  # the learning rate of every step
    weights: dict[str, float]  # each task's loss weight on this rank (task-per-rank under DDP)
    stream: StepStream
    loader: DataLoader
    val: ValBatches
    facts: dict[str, Any]  # what every checkpoint records besides the state (config, network, manifests, ...)
    specs: list[TaskSpec]
    log: RunLog

    @property
    def net(self) -> MultiTaskNet:
        return self.state.net


def prepare(cfg: TrainConfig, out: Path, found: tuple[Path, dict[str, Any]] | None) -> Run:
    """Set up the process and device, check the shard sets against the run, build and restore the state."""
    env = ddp.setup(cfg.device)
    seed_everything(cfg.seed)  # the same initial network on every rank; data and augmentations are per rank
    if env.device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input sizes: let cuDNN pick its fastest kernels
    if cfg.jpeg_decode == "device":
        try:
            require_backend()
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    sets = checked_sets(cfg)
    cfg = replace(cfg, tasks=tuple(sets))
    if found is not None:
        check_same_shards(found[1]["manifests"], manifest_hashes(sets.values()))
    net = build_network(cfg, sets).to_device(env.device)
    state = make_state(cfg, net, env.device)
    if found is not None:
        state.load_state_dict(found[1])
        if env.is_main:
            print(f"resuming {out} from {found[0].name} (step {state.step})", flush=True)
    model = wrap_model(cfg, net, env)
    splits = {task: sset.split(cfg.val_shards) for task, sset in sets.items()}
    if env.is_main:
        warn_no_validation(cfg, splits)
    my_tasks = ddp.assign_tasks(cfg.tasks, cfg.distributed, env.rank, env.world_size)
    specs = [task_spec(cfg, sets[task], net, splits[task][0], cfg.jpeg_decode == "device") for task in my_tasks]
    stream = StepStream(specs, cfg.seed, env.rank, state.step, cfg.stream_segment)
    facts = {
        "config": cfg.to_json(),
        "network": json.dumps(net.resolved_config(), sort_keys=True),
        "manifests": manifest_hashes(sets.values()),
        "world_size": env.world_size,
        "versions": versions(),
    }
    return Run(
        cfg=cfg,
        out=out,
        env=env,
        model=model,
        state=state,
        lrs=warmup_then_decay(
            cfg.lr, cfg.steps, cfg.warmup_steps, cfg.decay, cfg.final_lr, cfg.step_every, cfg.step_gamma
        ),
        weights=ddp.loss_weights(cfg.tasks, cfg.distributed, env.world_size),
        stream=stream,
        loader=make_loader(stream, cfg.workers, pin_memory=env.device.type == "cuda"),
        val=validation_batches(cfg, sets, net, splits) if env.is_main else {},
        facts=facts,
        specs=specs,
        log=open_log(cfg, out, env, state.step if found is not None else None),
    )


def warn_no_validation(cfg: TrainConfig, splits: dict[str, tuple[list[str], list[str]]]) -> None:
    """One line per set too small to hold shards out for validation (it trains on all of them instead)."""
    if cfg.val_shards == 0 or cfg.val_batches == 0:
        return
    for task, (train, val) in splits.items():
        if not val:
            print(
                f"note: the {task} shard set has {len(train)} shard(s), too few to hold {cfg.val_shards} out for "
                f"validation (it needs at least {cfg.val_shards + 2}): {task} trains on all of them and gets no "
                "validation loss; rebuild it with a smaller --samples-per-shard to have one",
                file=sys.stderr,
                flush=True,
            )


def open_log(cfg: TrainConfig, out: Path, env: ddp.DistEnv, resumed_at: int | None) -> RunLog:
    """The run's log (records after a resumed checkpoint dropped), and its resolved config for people
    (``config.json``; checkpoints hold their own copy)."""
    if env.is_main:
        write_text_atomic(out / "config.json", json.dumps(json.loads(cfg.to_json()), indent=1) + "\n")
    return RunLog(out / LOG_FILE, enabled=env.is_main, resume_step=resumed_at)


def checked_sets(cfg: TrainConfig) -> dict[str, ShardSet]:
    """The run's shard sets, each checked against the run's options by its task (one check per set)."""
    sets = open_sets(cfg.shards, TASK_CLASSES, cfg.tasks, cfg.verify)
    for task, sset in sets.items():
        fields = fields_for(TASK_CLASSES[task].keys(cfg.input_mode))
        try:
            check_run(sset, TASK_CLASSES[task], run_options(cfg, task), fields)
        except RunOptionError as exc:  # a run option, not the set: the CLI's one line for options
            raise ConfigError(str(exc)) from None
    return sets


def make_state(cfg: TrainConfig, net: MultiTaskNet, device: torch.device) -> TrainState:
    optimizer = make_optimizer(
        net, cfg.optimizer, cfg.lr, cfg.weight_decay, cfg.momentum, cfg.rmsprop_decay, cfg.resolved_eps
    )
    stopper = EarlyStop(cfg.tasks, cfg.early_stop, cfg.early_stop_margin)
    return TrainState(net, optimizer, torch.Generator(device), stopper)


def wrap_model(cfg: TrainConfig, net: MultiTaskNet, env: ddp.DistEnv) -> torch.nn.Module:
    if cfg.compile:
        compile_network(net)
    return ddp.wrap(net, env, find_unused=cfg.distributed == "task-per-rank")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def build_network(cfg: TrainConfig, sets: dict[str, ShardSet]) -> MultiTaskNet:
    """The lasso network for the run's tasks; each head gets what it takes from its set's manifest."""
    network = NetworkConfig(
        tasks=cfg.tasks,
        depth=cfg.depth,
        width=cfg.width,
        input_mode=cfg.input_mode,
        lasso=cfg.lasso,
        l1=cfg.l1,
        augment=cfg.augment,
        amp=cfg.amp,
        channels_last=cfg.channels_last,
    )
    task_configs = {t: TASK_CLASSES[t].config_from_plain(cfg.task_options.get(t, {})) for t in cfg.tasks}
    inputs = {t: TASK_CLASSES[t].manifest_inputs(sets[t].manifest) for t in cfg.tasks if t in sets}
    return MultiTaskNet(network, task_configs, inputs)


def run_options(cfg: TrainConfig, task: str) -> RunOptions:
    """What the run asks of one task: its input mode, its batch and its head config (``--task-opt``)."""
    config = TASK_CLASSES[task].config_from_plain(cfg.task_options.get(task, {}))
    return RunOptions(cfg.input_mode, cfg.batch_for(task), config)


def task_spec(
    cfg: TrainConfig, sset: ShardSet, net: MultiTaskNet, urls: list[str], keep_jpeg: bool = False
) -> TaskSpec:
    run = run_options(cfg, sset.task)
    md5 = sset.md5_by_url() if cfg.check_shards else {}
    return TaskSpec(
        task=sset.task,
        urls=tuple(urls),
        fields=fields_for(net.keys(sset.task)),
        batch_size=run.batch_size,
        crop=TASK_CLASSES[sset.task].loader_crop(sset, run),
        buffer=cfg.shuffle_buffer,
        md5=tuple(md5[url] for url in urls) if md5 else (),
        keep_jpeg=keep_jpeg,
        cache_dir=cfg.cache_dir,
        max_bad_fraction=cfg.max_bad_fraction,
    )


def validation_batches(
    cfg: TrainConfig, sets: dict[str, ShardSet], net: MultiTaskNet, splits: dict[str, tuple[list[str], list[str]]]
) -> ValBatches:
    """The held-out batches of every task that has a validation split, read once and kept in memory."""
    out = {}
    for task, (_, held_out) in splits.items():
        if held_out and cfg.val_batches > 0:
            out[task] = fixed_batches(task_spec(cfg, sets[task], net, held_out), cfg.val_batches)
            if not out[task]:
                print(
                    f"note: the {task} shard(s) held out for validation hold fewer than 2 readable samples: "
                    f"{task} gets no validation loss; raise --val-shards",
                    file=sys.stderr,
                    flush=True,
                )
    return {task: batches for task, batches in out.items() if batches}


def check_same_shards(saved: dict[str, str], current: dict[str, str]) -> None:
    changed = [
        f"{t} ({saved.get(t)} -> {current.get(t)})"
        for t in sorted(set(saved) | set(current))
        if saved.get(t) != current.get(t)
    ]
    if changed:
        raise ShardSetError(
            "--resume: the shard sets differ from those the run started with (manifest hashes "
            + ", ".join(changed)
            + "); point --shards at the original sets, or start a new run"
        )


def compile_network(net: MultiTaskNet) -> None:
    """torch.compile the trunk and every head in place (parameter names, hence checkpoints, unchanged)."""
    net.trunk.compile()
    for task in net.tasks.values():
        task.head.compile()


def versions() -> dict[str, str]:
    out = {"torch": str(torch.__version__)}
    for name in ("mtssl", "webdataset", "numpy"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out
