"""``mtssl-train``: train one trunk on every pretext task's shard set (Doersch & Zisserman 2017).

Single process: ``mtssl-train --shards shards/``. Several GPUs or nodes: the same command under
``torchrun`` (see the README). ``--resume`` continues the run in ``--out`` from its newest checkpoint.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from mtssl.contract.locks import LockHeld
from mtssl.data.shardsets import ShardSetError
from mtssl.inputs import MODES
from mtssl.train.config import (
    DECAYS,
    DIST_MODES,
    OPTIMIZERS,
    ConfigError,
    TrainConfig,
    merge_for_resume,
    parse_task_batch,
    parse_task_options,
)
from mtssl.train.damage import DamagedData
from mtssl.train.errors import SaveError
from mtssl.train.interrupt import Interrupted
from mtssl.train.presets import PRESETS, preset_values

app = typer.Typer(help=__doc__, pretty_exceptions_enable=False, add_completion=False)
D = TrainConfig()
DATA, NET, OPT, RUN = "Data", "Network", "Optimisation", "Run"


def _opt(help: str, panel: str, *names: str, **kw) -> typer.Option:  # noqa: A002 - typer's own word
    return typer.Option(*names, help=help, rich_help_panel=panel, **kw)


def _choice(help: str, panel: str, choices: tuple) -> typer.Option:  # noqa: A002
    """An option with a fixed set of values, shown as ``<a|b|c>``; the config refuses others in one line."""
    return _opt(help, panel, metavar="<" + "|".join(map(str, choices)) + ">")


@app.command()
def main(
    ctx: typer.Context,
    shards: Annotated[
        str, _opt("Folder or URL (s3://bucket/prefix) of the shard sets, found by their manifest.json.", DATA)
    ] = D.shards,
    out: Annotated[Path, _opt("Run folder: checkpoints, trunk.pt, log.jsonl, config.json.", RUN)] = Path(D.out),
    resume: Annotated[bool, _opt("Continue the run in --out from its newest checkpoint.", RUN)] = False,
    tasks: Annotated[str | None, _opt("Comma-separated subset of tasks; default: every set found.", DATA)] = None,
    verify: Annotated[bool, _opt("Check every shard's md5 against its manifest first.", DATA)] = D.verify,
    check_shards: Annotated[
        bool, _opt("Check each shard's md5 as it is read; skip and count a damaged one.", DATA)
    ] = D.check_shards,
    max_bad_fraction: Annotated[
        float,
        _opt(
            "Stop when more than this share of a task's shards is damaged (always when all are).",
            DATA,
            min=0.0,
            max=1.0,
        ),
    ] = D.max_bad_fraction,
    val_shards: Annotated[int, _opt("Shards of every set held out for validation (none if < 3).", DATA, min=0)] = (
        D.val_shards
    ),
    val_every: Annotated[int, _opt("Validation loss and metric every N steps.", RUN, min=1)] = D.val_every,
    val_batches: Annotated[int, _opt("Validation mini-batches per task.", DATA, min=0)] = D.val_batches,
    early_stop: Annotated[
        int,
        _opt(
            "Stop training a task once its validation loss stays above its best (by --early-stop-margin) for N "
            "validations in a row: it memorises its shards. 0: never.",
            RUN,
            min=0,
        ),
    ] = D.early_stop,
    early_stop_margin: Annotated[
        float, _opt("How far above its best validation loss counts, as a share (0.2: 20%).", RUN, min=0.0)
    ] = D.early_stop_margin,
    batch_size: Annotated[int, _opt("Mini-batch per task and rank.", DATA, min=1)] = D.batch_size,
    task_batch: Annotated[
        list[str] | None, _opt("Per-task batch, TASK=N (repeatable).", DATA, metavar="TASK=N")
    ] = None,
    patch_size: Annotated[
        int | None, _opt("Relpos patch / exemplar view side the sets must have been built with.", DATA)
    ] = D.patch_size,
    motion_crop: Annotated[
        int | None, _opt("Side of random square motion crops; default: the frames' shorter side.", DATA)
    ] = D.motion_crop,
    workers: Annotated[int, _opt("DataLoader workers per rank (all tasks).", DATA, min=0)] = D.workers,
    shuffle_buffer: Annotated[int, _opt("Shuffle buffer per task and worker, in samples.", DATA, min=1)] = (
        D.shuffle_buffer
    ),
    cache_dir: Annotated[
        str | None, _opt("Keep a local copy of each shard read from a bucket here, for later epochs.", DATA)
    ] = D.cache_dir,
    jpeg_decode: Annotated[
        str,
        _choice("Where JPEGs are decoded: cpu (loader workers) or device (nvJPEG on CUDA).", DATA, ("cpu", "device")),
    ] = D.jpeg_decode,
    depth: Annotated[int, _choice("Trunk depth (paper: 101).", NET, (18, 50, 101))] = D.depth,
    width: Annotated[int, _opt("Trunk root width (paper: 64).", NET, min=1)] = D.width,
    input_mode: Annotated[str, _choice("harmonized (L for every task) or native.", NET, MODES)] = D.input_mode,
    lasso: Annotated[bool, _opt("Learn each task's mix of block-3 units (off: naive trunk).", NET)] = D.lasso,
    augment: Annotated[
        bool, _opt("Fresh crops and flips per step (the tasks' crop/flip options); off: stored samples.", DATA)
    ] = D.augment,
    l1: Annotated[float, _opt("L1 penalty on the lasso weights.", NET)] = D.l1,
    task_opt: Annotated[
        list[str] | None,
        _opt(
            "Task head option, TASK.FIELD=VALUE, e.g. relpos.patch_dim=512 (repeatable).",
            NET,
            metavar="TASK.FIELD=VALUE",
        ),
    ] = None,
    steps: Annotated[int, _opt("Training steps.", OPT, min=1)] = D.steps,
    optimizer: Annotated[str, _choice("rmsprop (paper), sgd or adamw.", OPT, OPTIMIZERS)] = D.optimizer,
    lr: Annotated[float, _opt("Peak learning rate.", OPT)] = D.lr,
    momentum: Annotated[float, _opt("Momentum of rmsprop and sgd.", OPT)] = D.momentum,
    rmsprop_decay: Annotated[float, _opt("RMSProp decay of the squared-gradient average.", OPT)] = D.rmsprop_decay,
    eps: Annotated[float | None, _opt("Optimizer epsilon; default 1e-3 for rmsprop, 1e-8 for adamw.", OPT)] = D.eps,
    weight_decay: Annotated[float, _opt("Weight decay of conv and linear weights.", OPT)] = D.weight_decay,
    warmup_steps: Annotated[int, _opt("Linear learning-rate warm-up from 0.", OPT, min=0)] = D.warmup_steps,
    decay: Annotated[str, _choice("Learning-rate decay after warm-up: cosine, step or none.", OPT, DECAYS)] = D.decay,
    final_lr: Annotated[float, _opt("Learning rate at the last step (cosine).", OPT)] = D.final_lr,
    step_every: Annotated[int, _opt("Step decay: steps between drops.", OPT, min=1)] = D.step_every,
    step_gamma: Annotated[float, _opt("Step decay: factor per drop.", OPT)] = D.step_gamma,
    clip_grad: Annotated[float | None, _opt("Clip the global gradient norm to this.", OPT)] = D.clip_grad,
    preset: Annotated[
        str,
        _choice(
            "Defaults to start from: paper (the paper's model) or cpu (learns in 30 min on 2 cores).",
            RUN,
            tuple(PRESETS),
        ),
    ] = D.preset,
    seed: Annotated[int, _opt("Seed of the streams, augmentations and initialisation.", RUN)] = D.seed,
    device: Annotated[
        str, _opt("auto (CUDA when available), cpu, cuda or cuda:N; checked before any work.", RUN, metavar="DEVICE")
    ] = D.device,
    amp: Annotated[bool, _opt("bf16 autocast on CUDA.", RUN)] = D.amp,
    channels_last: Annotated[bool, _opt("channels-last memory format on CUDA.", RUN)] = D.channels_last,
    compile: Annotated[bool, _opt("torch.compile the trunk and heads.", RUN)] = D.compile,  # noqa: A002
    distributed: Annotated[
        str,
        _choice("Under torchrun: all-tasks (every rank every task) or task-per-rank (the paper's).", RUN, DIST_MODES),
    ] = D.distributed,
    save_every: Annotated[int, _opt("Checkpoint every N steps (also the data-stream segment).", RUN, min=1)] = (
        D.save_every
    ),
    keep: Annotated[int, _opt("Checkpoints kept.", RUN, min=1)] = D.keep,
    log_every: Annotated[int, _opt("A log.jsonl record every N steps.", RUN, min=1)] = D.log_every,
    progress: Annotated[bool | None, _opt("Progress bar (default: when stdout is a terminal).", RUN)] = None,
) -> None:
    """Stream every task's shards into the lasso multi-task network."""
    params = dict(locals())
    try:
        values = {
            **{k: v for k, v in params.items() if k not in ("ctx", "resume", "task_batch", "task_opt", "tasks")},
            "shards": str(shards),
            "out": str(out),
            "tasks": tuple(t.strip() for t in tasks.split(",") if t.strip()) if tasks else None,
            "task_batch": parse_task_batch(task_batch or []),
            "task_options": parse_task_options(task_opt or []),
        }
        typed = {_field(name): values[_field(name)] for name in _given(ctx)}
        if resume:
            cfg = _resumed_config(out, typed)
        else:
            try:
                values |= preset_values(preset, typed)
            except KeyError as exc:
                raise ConfigError(f"--preset: {exc.args[0]}") from exc
            cfg = TrainConfig(**values)
        from mtssl.train.loop import train  # heavy imports only once the options are valid

        train(cfg, resume=resume)
    except (ConfigError, ShardSetError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    except (SaveError, DamagedData, LockHeld) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    except Interrupted as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(exc.exit_code) from exc


def _field(param: str) -> str:
    return {"task_opt": "task_options"}.get(param, param)


def _given(ctx: typer.Context) -> list[str]:
    """Parameters typed on the command line (so a resume can tell them from defaults). Compared by name:
    typer vendors its own copy of click, whose ParameterSource is not click's."""
    return [
        name
        for name in ctx.params
        if name != "resume" and getattr(ctx.get_parameter_source(name), "name", None) == "COMMANDLINE"
    ]


def _resumed_config(out: Path, given: dict) -> TrainConfig:
    from mtssl.train.checkpoint import DamagedCheckpoints, load_latest

    try:
        found = load_latest(out)
    except DamagedCheckpoints as exc:
        raise ConfigError(f"--resume: {exc}") from None
    if found is None:
        raise ConfigError(f"--resume: no checkpoint in {out}")
    return merge_for_resume(TrainConfig.from_json(found[1]["config"]), given)


if __name__ == "__main__":
    sys.exit(app())
