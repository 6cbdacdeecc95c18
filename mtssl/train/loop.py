"""``train(cfg)``: stream every task's shards into the lasso network, one readable loop.

Each step draws ``--accumulate`` bundles (a mini-batch of every task the rank trains), runs the shared
trunk, each task's lasso mix and head, sums the task losses and the L1 penalty on the lasso weights, and
steps the optimizer (src: method.md, "Training"). Set-up lives in ``mtssl.train.setup``, the step in
``mtssl.train.step``, what a checkpoint holds in ``mtssl.train.state``.

Streams and resume. A checkpoint does not touch the data: the loader's streams run on across it, keeping
their shuffle buffers and prefetched batches. They start at the run's first step, at every resume, and,
with ``--stream-segment N``, at every multiple of N steps, from seeds that depend only on (seed, task,
rank, worker, step). So a resume from a checkpoint at a multiple of N continues with bit-identical steps to
the uninterrupted run on the CPU (same machine, ``--workers``, world size and options): model, optimizer,
RNG states and step come back from the checkpoint, and both runs start the same stream there. A resume
from any other checkpoint (and every resume with the default N = 0) draws a fresh stream from the same
shards: the same distribution, not the same batches. On CUDA cuDNN may pick other kernels, so losses
agree to rounding, not bit for bit. Resuming the final checkpoint of a shorter run (raising ``--steps``)
recomputes the schedule for the new length.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mtssl.contract.interrupts import signal_name, sigterm_as_interrupt
from mtssl.data.stream import HEALTH_KEY, to_device
from mtssl.model import MultiTaskNet
from mtssl.tasks import TASKS as TASK_CLASSES
from mtssl.train import checkpoint as ckpt
from mtssl.train import distributed as ddp
from mtssl.train.config import TrainConfig
from mtssl.train.damage import DamageTracker
from mtssl.train.early_stop import EarlyStop
from mtssl.train.interrupt import Interrupted
from mtssl.train.logging import LOG_FILE, RunLog, Window, duration, progress_bar
from mtssl.train.plots import CURVES_FILE, LASSO_FILE, write_plots
from mtssl.train.run_folder import resume_point, run_folder_lock
from mtssl.train.setup import Run, build_network, prepare, seed_everything, validation_batches
from mtssl.train.step import train_step
from mtssl.train.tensorboard import Board, TeeLog, open_board, require_tensorboard

__all__ = ["build_network", "seed_everything", "train", "validate", "validation_batches"]


def train(cfg: TrainConfig, resume: bool = False) -> dict[str, Any]:
    """Run (or with ``resume`` continue) a training run; returns the last log record. The run folder is
    locked while it runs (a second writer refuses, naming this one); Ctrl-C or SIGTERM ends it with
    :class:`~mtssl.train.interrupt.Interrupted`. With ``--tensorboard`` the main rank also writes the log's
    scalars to ``<out>/tensorboard/`` (``mtssl.train.tensorboard``), closed however the run ends."""
    if cfg.tensorboard:
        require_tensorboard()  # a missing package is one line before any work
    started = time.perf_counter()
    out = Path(cfg.out)
    with run_folder_lock(out), sigterm_as_interrupt():
        found = resume_point(out, resume, cfg.steps)
        if found is not None and int(found[1]["step"]) == cfg.steps:
            print(f"nothing to do: {out} is already at step {cfg.steps} of {cfg.steps} (ask for more with --steps)")
            return {"step": cfg.steps, "event": "end"}
        run = prepare(cfg, out, found)
        resumed_at = run.state.step if found is not None else None
        with open_board(cfg.tensorboard and run.env.is_main, out, resumed_at) as board:
            run.log = TeeLog(run.log, board)  # every record of log.jsonl goes to TensorBoard too
            try:
                record = run_steps(run, board)
            except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (mtssl.contract.interrupts)
                raise interrupted(exc, run) from None
            return finish(run, record, time.perf_counter() - started)


def run_steps(run: Run, board: Board | None = None) -> dict[str, Any]:
    """The step loop: data, one optimizer step, validation, log, checkpoint; returns the last log record."""
    cfg, env, state, log = run.cfg, run.env, run.state, run.log
    damage = DamageTracker(cfg.max_bad_fraction, {s.task: len(set(s.urls)) for s in run.specs})
    per_task_ranks = ddp.ranks_per_task(cfg.tasks, cfg.distributed, env.world_size)
    record, window, data = {}, Window(), None
    samples_per_step = cfg.accumulate * sum(cfg.batch_for(t) * n for t, n in per_task_ranks.items())
    with progress_bar(cfg.progress if env.is_main else False, cfg.steps, state.step, samples_per_step) as bar:
        while state.step < cfg.steps:
            if data is None or (cfg.stream_segment and state.step % cfg.stream_segment == 0):
                data = iter(run.loader)  # a new stream segment (mtssl.data.stream)
                state.generator.manual_seed(augment_seed(cfg.seed, env.rank, state.step))
            tic = time.perf_counter()
            micro = [next_bundle(data, run, damage) for _ in range(cfg.accumulate)]
            waited = time.perf_counter() - tic
            state.set_lr(float(run.lrs[state.step]))
            stopped = state.stopper.stopped
            if stopped and not env.distributed:  # under DDP a stopped task runs at weight 0 (see train_step)
                micro = [{t: b for t, b in batches.items() if t not in stopped} for batches in micro]
            loss, metrics = train_step(run.model, state, micro, run.weights, stopped, cfg.clip_grad)
            window.add(loss, metrics, waited)
            done = state.step
            checking = validating(cfg, done)
            scores = validate(run.net, run.val, cfg.seed, env.device) if checking else {}
            if checking and cfg.early_stop:  # every rank: rank 0 decides, the others follow
                stop_tasks(state.stopper, scores, done, env, log)
            if done % cfg.log_every == 0 or done == cfg.steps:
                lr = float(run.lrs[done - 1])
                stops = state.stopper.stopped
                record = {**log_record(window, run.net, cfg, env, per_task_ranks, done, lr, stops), **scores}
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
            if env.is_main and (done % cfg.save_every == 0 or done == cfg.steps):
                save(run, board)
    return record


def next_bundle(data: Iterator[dict[str, Any]], run: Run, damage: DamageTracker) -> dict[str, Any]:
    """The next bundle of every task's batch, on the device; its worker's shard health goes to ``damage``."""
    bundle = next(data)
    damage.update(bundle.pop(HEALTH_KEY, None))
    batches = to_device(bundle, run.env.device)
    run.stream.release(bundle)
    return batches


def validating(cfg: TrainConfig, done: int) -> bool:
    return done % cfg.val_every == 0 or done == cfg.steps


def save(run: Run, board: Board | None = None) -> None:
    """The checkpoint (state and the run's facts), the trunk export and the pictures (and with
    ``--tensorboard`` the lasso heat map, and the event files flushed)."""
    net = run.net
    lasso = net.lasso_weights().cpu()
    ckpt.save_checkpoint(run.out, {**run.state.state_dict(), "lasso": lasso, **run.facts}, run.cfg.keep)
    ckpt.export_trunk(run.out, net, run.facts["network"], run.state.step)
    write_plots(run.out)
    if board is not None:
        board.checkpoint(run.state.step, net.config.tasks, lasso)


def finish(run: Run, record: dict[str, Any], wall_s: float) -> dict[str, Any]:
    """Check that every rank holds the same parameters, log the end, let the workers and group go.
    ``wall_s``: this process's wall time on the run (a resumed run: since the resume)."""
    cfg, env = run.cfg, run.env
    digests = ddp.gather_digests(ddp.param_digest(run.net))
    end = {"step": cfg.steps, "event": "end", "param_digests": digests, "ranks_in_sync": len(set(digests)) == 1}
    end["wall_s"] = round(wall_s, 1)
    run.log.write(end)
    if env.is_main and not end["ranks_in_sync"]:
        print(f"warning: ranks ended with different parameters: {digests}", flush=True)
    run.model = run.loader = None  # DDP's reducer and the loader's workers go before the process group does
    ddp.teardown()
    if env.is_main:
        print_summary(run.out, record, cfg, wall_s)
    return {**record, **end}


def interrupted(exc: KeyboardInterrupt, run: Run) -> Interrupted:
    kept = ckpt.checkpoints(run.out)
    last, last_step = (kept[-1][1], kept[-1][0]) if kept else (None, 0)
    return Interrupted(signal_name(exc), run.state.step, run.cfg.steps, run.out, last, last_step)


# ---- building blocks ---------------------------------------------------------------------------------


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


def augment_seed(seed: int, rank: int, step: int) -> int:
    """Seed of the on-device augmentation generator for the segment starting at ``step``."""
    return int(np.random.SeedSequence([seed, rank, step, 0x61756720]).generate_state(1)[0])


@torch.no_grad()
def validate(
    net: MultiTaskNet, val: dict[str, list[dict[str, torch.Tensor]]], seed: int, device: torch.device
) -> dict[str, float]:
    """Mean loss and metric of every task on its validation samples (batch means weighted by batch size: the
    last batch may be partial): eval mode (central crops, no flips, running BN statistics) and one fixed
    seed, so that successive evaluations differ only by the weights."""
    if not val:
        return {}
    was_training = net.training
    net.eval()
    generator = torch.Generator(device).manual_seed(seed)
    scores: dict[str, float] = {}
    for task, batches in val.items():
        sums: dict[str, float] = {}
        samples = 0
        for batch in batches:
            _, metrics = net.task_step(task, to_device({task: batch}, device)[task], generator)
            size = batch_size_of(batch)
            samples += size
            for key, value in metrics.items():
                sums[f"val_{key}"] = sums.get(f"val_{key}", 0.0) + float(value) * size
        scores |= {key: round(total / samples, 6) for key, total in sums.items()}
    net.train(was_training)
    return scores


def batch_size_of(batch: dict[str, torch.Tensor]) -> int:
    return len(next(iter(batch.values())))


def print_summary(out: Path, record: dict[str, Any], cfg: TrainConfig, wall_s: float) -> None:
    """The run's last losses and metrics, its wall time, and where its files are."""
    lines = [f"done: {cfg.steps} steps in {out}, wall time {duration(wall_s)}"]
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
            samples = cfg.batch_for(task) * cfg.accumulate * per_task_ranks[task]
            record[f"{task}_samples_per_s"] = round(samples / means["step_s"], 2)
    if stopped:
        record["stopped"] = dict(stopped)
    alpha = net.lasso_weights().cpu()
    record["lasso"] = {task: [round(float(a), 5) for a in row] for task, row in zip(cfg.tasks, alpha, strict=True)}
    return record
