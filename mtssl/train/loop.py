"""``train(cfg)``: stream every task's shards into the lasso network, one readable loop.

Each step draws a mini-batch of every task the rank trains, runs the shared trunk, each task's lasso mix
and head, sums the task losses and the L1 penalty on the lasso weights, and steps the optimizer (src:
method.md, "Training"). Build -> resume -> loop -> save, in the order of the banners below.

Resume guarantee: resuming from a checkpoint taken at a multiple of ``--save-every`` (every periodic
checkpoint) continues with bit-identical steps to the uninterrupted run on the CPU, on the same machine
with the same ``--workers``, world size and options: the data streams and the augmentation generator
restart at every multiple of ``--save-every`` from seeds that depend only on (seed, rank, worker, step),
in both runs, and the model, optimizer and RNG states come back from the checkpoint. On CUDA the batches
and augmentations are the same too, but cuDNN may pick other kernels, so losses agree to rounding, not
bit for bit. Resuming from the final checkpoint of a shorter run (raising ``--steps``) continues without
replaying data, but the schedule is recomputed for the new length and the streams start fresh.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterable
from dataclasses import replace
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mtssl.contract.interrupts import signal_name, sigterm_as_interrupt
from mtssl.data.device_decode import require_backend
from mtssl.data.shardsets import ShardSet, ShardSetError, check_run, manifest_hashes, open_sets
from mtssl.data.stream import HEALTH_KEY, StepStream, TaskSpec, fields_for, fixed_batches, make_loader, to_device
from mtssl.model import MultiTaskNet, NetworkConfig
from mtssl.tasks import TASKS as TASK_CLASSES
from mtssl.tasks.base import RunOptions
from mtssl.train import checkpoint as ckpt
from mtssl.train import distributed as ddp
from mtssl.train.config import ConfigError, TrainConfig
from mtssl.train.damage import DamageTracker
from mtssl.train.early_stop import EarlyStop
from mtssl.train.interrupt import Interrupted
from mtssl.train.logging import LOG_FILE, RunLog, Window, progress_bar
from mtssl.train.plots import CURVES_FILE, LASSO_FILE, write_plots
from mtssl.train.run_folder import resume_point, run_folder_lock
from mtssl.train.schedule import warmup_then_decay


def train(cfg: TrainConfig, resume: bool = False) -> dict[str, Any]:
    """Run (or with ``resume`` continue) a training run; returns the last log record. The run folder is
    locked while it runs (a second writer refuses, naming this one); Ctrl-C or SIGTERM ends it with
    :class:`~mtssl.train.interrupt.Interrupted`."""
    out = Path(cfg.out)
    with run_folder_lock(out), sigterm_as_interrupt():
        return _train(cfg, out, resume)


def _train(cfg: TrainConfig, out: Path, resume: bool) -> dict[str, Any]:
    found = resume_point(out, resume, cfg.steps)
    if found is not None and int(found[1]["step"]) == cfg.steps:
        print(f"nothing to do: {out} is already at step {cfg.steps} of {cfg.steps} (ask for more with --steps)")
        return {"step": cfg.steps, "event": "end"}
    # ============ distributed set-up, device, seeds ============
    env = ddp.setup(cfg.device)
    seed_everything(cfg.seed)  # the same initial network on every rank; data and augmentations are per rank
    if env.device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input sizes: let cuDNN pick its fastest kernels
    if cfg.jpeg_decode == "device":
        try:
            require_backend()
        except ValueError as exc:
            raise ConfigError(str(exc)) from None

    # ============ shard sets: find them, check them against the run ============
    sets = open_sets(cfg.shards, TASK_CLASSES, cfg.tasks, cfg.verify)
    cfg = replace(cfg, tasks=tuple(sets))
    for task, sset in sets.items():
        problem = TASK_CLASSES[task].check_run(run_options(cfg, task))
        if problem:
            raise ConfigError(problem)
        check_run(sset, TASK_CLASSES[task], run_options(cfg, task), fields_for(TASK_CLASSES[task].keys(cfg.input_mode)))
    net = build_network(cfg, sets)
    if found is not None:
        check_same_shards(found[1]["manifests"], manifest_hashes(sets.values()))

    # ============ network, task assignment, DDP ============
    net.to_device(env.device)
    my_tasks = ddp.assign_tasks(cfg.tasks, cfg.distributed, env.rank, env.world_size)
    weights = ddp.loss_weights(cfg.tasks, cfg.distributed, env.world_size)
    if cfg.compile:
        compile_network(net)
    model = ddp.wrap(net, env, find_unused=cfg.distributed == "task-per-rank")

    # ============ optimizer and learning-rate schedule ============
    optimizer = make_optimizer(cfg, net)
    lrs = warmup_then_decay(
        cfg.lr, cfg.steps, cfg.warmup_steps, cfg.decay, cfg.final_lr, cfg.step_every, cfg.step_gamma
    )
    generator = torch.Generator(env.device)
    stopper = EarlyStop(cfg.tasks, cfg.early_stop, cfg.early_stop_margin)
    # a stopped task's batch is left out of the step; under DDP it runs at weight 0 instead, so every rank
    # still runs the trunk (DDP broadcasts rank 0's BN statistics) and every parameter gets a gradient
    drop_stopped = not env.distributed

    # ============ resume: model, optimizer, step, RNG states ============
    start = 0
    if found is not None:
        path, state = found
        net.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        ckpt.set_rng_state(state["rng"], generator)
        stopper.load_state_dict(state.get("early_stop", {}))
        start = int(state["step"])
        if env.is_main:
            print(f"resuming {out} from {path.name} (step {start})", flush=True)

    # ============ data: one stream of every task this rank trains, and held-out validation batches ============
    splits = {task: sset.split(cfg.val_shards) for task, sset in sets.items()}
    specs = [task_spec(cfg, sets[task], net, splits[task][0], cfg.jpeg_decode == "device") for task in my_tasks]
    val = validation_batches(cfg, sets, net, splits) if env.is_main else {}
    stream = StepStream(specs, cfg.seed, env.rank, start, cfg.save_every)
    loader = make_loader(stream, cfg.workers, pin_memory=env.device.type == "cuda")
    per_task_ranks = ddp.ranks_per_task(cfg.tasks, cfg.distributed, env.world_size)
    network_json = json.dumps(net.resolved_config(), sort_keys=True)
    hashes = manifest_hashes(sets.values())

    # ============ training loop ============
    log = RunLog(out / LOG_FILE, enabled=env.is_main, resume_step=start if found is not None else None)
    if env.is_main:  # the resolved config, for people; checkpoints hold their own copy
        out.mkdir(parents=True, exist_ok=True)
        ckpt.write_text_atomic(out / "config.json", json.dumps(json.loads(cfg.to_json()), indent=1) + "\n")
    record: dict[str, Any] = {}
    window, data = Window(), None
    damage = DamageTracker(cfg.max_bad_fraction, {s.task: len(set(s.urls)) for s in specs})
    done = start
    try:
        with progress_bar(cfg.progress if env.is_main else False, cfg.steps, start) as bar:
            for step in range(start, cfg.steps):
                if data is None or step % cfg.save_every == 0:  # a new stream segment (see mtssl.data.stream)
                    data = iter(loader)
                    generator.manual_seed(augment_seed(cfg.seed, env.rank, step))
                tic = time.perf_counter()
                bundle = next(data)
                damage.update(bundle.pop(HEALTH_KEY, None))
                batches = to_device(bundle, env.device)
                stream.release(bundle)
                waited = time.perf_counter() - tic
                for group in optimizer.param_groups:
                    group["lr"] = float(lrs[step])
                stopped = stopper.stopped
                if stopped and drop_stopped:
                    batches = {task: batch for task, batch in batches.items() if task not in stopped}
                loss, metrics = model(batches, generator, {**weights, **dict.fromkeys(stopped, 0.0)})
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if stopped and not drop_stopped:
                    freeze_grads(net, stopped)
                if cfg.clip_grad:
                    torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.clip_grad)
                optimizer.step()
                window.add(loss, metrics, waited)
                done = step + 1

                validating = done % cfg.val_every == 0 or done == cfg.steps
                scores = validate(net, val, cfg.seed, env.device) if validating else {}
                if validating and cfg.early_stop:
                    stop_tasks(stopper, scores, done, env, log)
                if done % cfg.log_every == 0 or done == cfg.steps:
                    record = {
                        **log_record(window, net, cfg, env, per_task_ranks, done, float(lrs[step]), stopper.stopped),
                        **scores,
                    }
                    if damage.damaged():
                        record["bad_shards"] = damage.damaged()
                    log.write(record)
                    damage.check()
                    bar.update(done, record["loss"])
                    window = Window()
                else:
                    if scores:
                        log.write({"step": done, "event": "val", **scores})
                    bar.update(done)

                # ============ save: atomic checkpoint and trunk export ============
                if env.is_main and (done % cfg.save_every == 0 or done == cfg.steps):
                    state = {
                        "step": done,
                        "model": net.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "rng": ckpt.rng_state(generator),
                        "early_stop": stopper.state_dict(),
                        "lasso": net.lasso_weights().cpu(),
                        "config": cfg.to_json(),
                        "network": network_json,
                        "manifests": hashes,
                        "world_size": env.world_size,
                        "versions": versions(),
                    }
                    ckpt.save_checkpoint(out, state, cfg.keep)
                    ckpt.export_trunk(out, net, network_json, done)
                    write_plots(out)
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (mtssl.train.interrupt)
        kept = ckpt.checkpoints(out)
        last, last_step = (kept[-1][1], kept[-1][0]) if kept else (None, 0)
        raise Interrupted(signal_name(exc), done, cfg.steps, out, last, last_step) from None

    # ============ end: every rank holds the same parameters ============
    digests = ddp.gather_digests(ddp.param_digest(net))
    end = {"step": cfg.steps, "event": "end", "param_digests": digests, "ranks_in_sync": len(set(digests)) == 1}
    log.write(end)
    if env.is_main and not end["ranks_in_sync"]:
        print(f"warning: ranks ended with different parameters: {digests}", flush=True)
    del model, data  # DDP's reducer and the loader's workers go before the process group does
    ddp.teardown()
    if env.is_main:
        print_summary(out, record, cfg)
    return {**record, **end}


# ---- building blocks ---------------------------------------------------------------------------------


def freeze_grads(net: MultiTaskNet, tasks: Iterable[str]) -> None:
    """No gradient for the tasks' heads and lasso rows, so the optimizer skips them (no momentum, no decay)."""
    for task in tasks:
        params = [*net.tasks[task].parameters()]
        if task in net.lasso.alpha:
            params.append(net.lasso.alpha[task])
        for param in params:
            param.grad = None


def stop_tasks(stopper: EarlyStop, scores: dict[str, float], step: int, env: ddp.DistEnv, log: RunLog) -> None:
    """Rank 0 judges this validation's scores; every rank then holds the same stopped tasks."""
    newly = stopper.update(scores, step) if env.is_main else []
    stopper.set_stopped(ddp.broadcast_stopped(stopper.stopped, stopper.tasks, env.device))
    for task in newly:
        watch = stopper.watches[task]
        log.write(
            {
                "step": step,
                "event": "task_stopped",
                "task": task,
                "best_val_loss": watch.best,
                "best_step": watch.best_step,
            }
        )
        print(stopper.describe(task), flush=True)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def augment_seed(seed: int, rank: int, step: int) -> int:
    """Seed of the on-device augmentation generator for the segment starting at ``step``."""
    return int(np.random.SeedSequence([seed, rank, step, 0x61756720]).generate_state(1)[0])


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
    return RunOptions(cfg.input_mode, cfg.batch_for(task), cfg.patch_size, cfg.motion_crop)


def task_spec(
    cfg: TrainConfig, sset: ShardSet, net: MultiTaskNet, urls: list[str], keep_jpeg: bool = False
) -> TaskSpec:
    run = run_options(cfg, sset.task)
    crop = TASK_CLASSES[sset.task].loader_crop(sset.recipe, run)
    md5 = sset.md5_by_url() if cfg.check_shards else {}
    checksums = tuple(md5[url] for url in urls) if md5 else ()
    fields = fields_for(net.keys(sset.task))
    return TaskSpec(
        sset.task,
        tuple(urls),
        fields,
        run.batch_size,
        crop,
        cfg.shuffle_buffer,
        checksums,
        keep_jpeg,
        cfg.cache_dir,
        cfg.max_bad_fraction,
    )


def validation_batches(
    cfg: TrainConfig, sets: dict[str, ShardSet], net: MultiTaskNet, splits: dict[str, tuple[list[str], list[str]]]
) -> dict[str, list[dict[str, torch.Tensor]]]:
    """The held-out batches of every task that has a validation split, read once and kept in memory."""
    out = {}
    for task, (_, held_out) in splits.items():
        if held_out and cfg.val_batches > 0:
            out[task] = fixed_batches(task_spec(cfg, sets[task], net, held_out), cfg.val_batches)
    return {task: batches for task, batches in out.items() if batches}


@torch.no_grad()
def validate(
    net: MultiTaskNet, val: dict[str, list[dict[str, torch.Tensor]]], seed: int, device: torch.device
) -> dict[str, float]:
    """Mean loss and metric of every task on its validation batches: eval mode (central crops, no flips,
    running BN statistics) and one fixed seed, so that successive evaluations differ only by the weights."""
    if not val:
        return {}
    was_training = net.training
    net.eval()
    generator = torch.Generator(device).manual_seed(seed)
    scores: dict[str, float] = {}
    for task, batches in val.items():
        sums: dict[str, float] = {}
        for batch in batches:
            _, metrics = net.task_step(task, to_device({task: batch}, device)[task], generator)
            for key, value in metrics.items():
                sums[f"val_{key}"] = sums.get(f"val_{key}", 0.0) + float(value)
        scores |= {key: round(total / len(batches), 6) for key, total in sums.items()}
    net.train(was_training)
    return scores


def print_summary(out: Path, record: dict[str, Any], cfg: TrainConfig) -> None:
    """The run's last losses and metrics, and where its files are."""
    lines = [f"done: {cfg.steps} steps in {out}"]
    for task in cfg.tasks:
        metric = TASK_CLASSES[task].metric_name
        train = f"loss {record.get(f'{task}_loss', float('nan')):.4f}, {metric} {record.get(metric, float('nan')):.3f}"
        if task in record.get("stopped", {}):
            train = f"stopped at step {record['stopped'][task]} (--early-stop)"
        held = ""
        if f"val_{task}_loss" in record:
            held = f"; validation loss {record[f'val_{task}_loss']:.4f}, {metric} {record[f'val_{metric}']:.3f}"
        lines.append(f"  {task:9s} {train}{held}")
    if record.get("bad_shards"):
        lines.append(f"  damaged shards skipped (reads, per task): {record['bad_shards']}; see mtssl-data verify")
    lines.append(
        f"  checkpoints {out}/ckpt-*.pt, trunk {out / ckpt.TRUNK_FILE} (mtssl.load_trunk), log {out / LOG_FILE}"
    )
    lines.append(f"  pictures {out / CURVES_FILE}, {out / LASSO_FILE}; next: mtssl-eval probe --run {out} ...")
    print("\n".join(lines), flush=True)


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


def make_optimizer(cfg: TrainConfig, net: torch.nn.Module) -> torch.optim.Optimizer:
    """RMSProp (default), SGD or AdamW; weight decay on conv and linear weights only (not on biases,
    normalisation or lasso weights, which have their own L1 penalty)."""
    decay = [p for p in net.parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in net.parameters() if p.requires_grad and p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    eps = cfg.resolved_eps
    if cfg.optimizer == "rmsprop":
        return torch.optim.RMSprop(groups, lr=cfg.lr, alpha=cfg.rmsprop_decay, eps=eps, momentum=cfg.momentum)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum)
    return torch.optim.AdamW(groups, lr=cfg.lr, eps=eps)


def log_record(
    window: Window,
    net: MultiTaskNet,
    cfg: TrainConfig,
    env: ddp.DistEnv,
    per_task_ranks: dict[str, int],
    step: int,
    lr: float,
    stopped: dict[str, int] | None = None,
) -> dict[str, Any]:
    """The window's means over every rank, samples/s per task over all ranks, the lasso weights, and the
    early-stopped tasks (their train loss and metric are left out once they are no longer run)."""
    keys = ["loss", "lasso_penalty", "data_wait", "step_s"]
    for task in cfg.tasks:
        keys += [f"{task}_loss", net.tasks[task].metric_name]
    means = ddp.reduce_mean(window.means(), keys, env.device)
    record: dict[str, Any] = {"step": step, "lr": lr, **{k: round(v, 6) for k, v in means.items()}}
    for task in cfg.tasks:
        if f"{task}_loss" in means:
            record[f"{task}_samples_per_s"] = round(cfg.batch_for(task) * per_task_ranks[task] / means["step_s"], 2)
    if stopped:
        record["stopped"] = dict(stopped)
    alpha = net.lasso_weights().cpu()
    record["lasso"] = {task: [round(float(a), 5) for a in row] for task, row in zip(cfg.tasks, alpha, strict=True)}
    return record


def versions() -> dict[str, str]:
    out = {"torch": str(torch.__version__)}
    for name in ("mtssl", "webdataset", "numpy"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out
