"""``mtssl-train``: train one trunk on every pretext task's shard set (Doersch & Zisserman 2017).

Single process: ``mtssl-train --shards shards/``. Several GPUs or nodes: the same command under
``torchrun`` (see the README). ``--resume`` continues the run in ``--out`` from its newest checkpoint.

Every option is a ``TrainConfig`` field (``mtssl/train/config.py``), declared there once with its help,
panel, choices and resume rule; the command's options are made from those fields.
"""

from __future__ import annotations

import dataclasses
import inspect
import sys
import typing
from pathlib import Path
from typing import Annotated, Any

import typer

from mtssl.cli_style import HelpCommand, choices_metavar, complete_from, make_app
from mtssl.contract.locks import LockHeld
from mtssl.data.shardsets import ShardSetError
from mtssl.train.config import (
    ConfigError,
    TrainConfig,
    flag_of,
    merge_for_resume,
    parse_task_batch,
    parse_task_options,
)
from mtssl.train.damage import DamagedData
from mtssl.train.errors import SaveError
from mtssl.train.interrupt import Interrupted

app = make_app(help=__doc__)

SHORT_FLAGS = {"out": "-o"}  # the same short flag for --out in every mtssl program


def parse_tasks(text: str | None) -> tuple[str, ...] | None:
    return tuple(t.strip() for t in text.split(",") if t.strip()) if text else None


# Fields typed on the command line in another form than their own: the text form and its parser.
TEXT_FORMS: dict[str, tuple[Any, Any]] = {
    "tasks": (str | None, parse_tasks),
    "task_batch": (list[str] | None, lambda items: parse_task_batch(items or [])),
    "task_options": (list[str] | None, lambda items: parse_task_options(items or [])),
}


def option_parameter(f: dataclasses.Field, hint: Any) -> inspect.Parameter:
    """The CLI option of one config field: its flag, help, panel and choices as the field declares them."""
    meta = f.metadata
    kind = TEXT_FORMS[f.name][0] if f.name in TEXT_FORMS else hint
    default = None if f.name in TEXT_FORMS else f.default
    choices = meta.get("choices")
    metavar = meta.get("metavar") or (choices_metavar(choices) if choices else None)
    names = flag_of(f)
    if hint in (bool, bool | None):  # a switch: --amp / --no-amp
        names = f"{names}/--no-{names[2:]}"
    short = (SHORT_FLAGS[f.name],) if f.name in SHORT_FLAGS else ()
    complete = completion_of(f)
    flag = typer.Option(
        names, *short, help=meta["help"], rich_help_panel=meta["panel"], metavar=metavar, autocompletion=complete
    )
    return inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=Annotated[kind, flag])


def task_names() -> list[str]:
    from mtssl.tasks import TASKS  # torch: only when the shell asks for a completion

    return list(TASKS)


def task_option_names() -> list[str]:
    """``TASK.FIELD=`` for every task's head option (``--task-opt rel<TAB>``)."""
    from mtssl.tasks import TASKS

    return [f"{t}.{f.name}=" for t, task in TASKS.items() for f in dataclasses.fields(task.config_class)]


def completion_of(f: dataclasses.Field) -> Any:
    """What the shell completes for a config field's option: its choices, task names, task options."""
    if f.metadata.get("choices"):
        return complete_from(lambda: [str(c) for c in f.metadata["choices"]])
    return {
        "tasks": complete_from(task_names, separator=","),
        "task_batch": complete_from(lambda: [f"{t}=" for t in task_names()]),
        "task_options": complete_from(task_option_names),
    }.get(f.name)


# Options of the command that are not run options: how to read them, what they do.
COMMAND_OPTIONS = {
    "resume": (
        bool,
        False,
        typer.Option(help="Continue the run in --out from its newest checkpoint.", rich_help_panel="Run"),
    ),
    "config": (
        Path | None,
        None,
        typer.Option(
            "--config",
            "-c",
            help="YAML (or JSON) file of options by their snake_case names (batch_size: 16); the command line "
            "wins over it, it wins over the preset. A run's config.json is one.",
            rich_help_panel="Run",
            metavar="FILE",
            dir_okay=False,
        ),
    ),
    "print_config": (
        bool,
        False,
        typer.Option(
            "--print-config",
            help="Print the resolved options (a valid --config file) and each shard set found with its samples, "
            "then exit without training.",
            rich_help_panel="Run",
        ),
    ),
}


def command_signature() -> inspect.Signature:
    hints = typing.get_type_hints(TrainConfig)
    parameters = [
        inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context),
        *(
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=Annotated[kind, flag])
            for name, (kind, default, flag) in COMMAND_OPTIONS.items()
        ),
        *(option_parameter(f, hints[f.name]) for f in dataclasses.fields(TrainConfig)),
    ]
    return inspect.Signature(parameters)


def main(
    ctx: typer.Context, resume: bool = False, config: Path | None = None, print_config: bool = False, **options: Any
) -> None:
    """Stream every task's shards into the lasso multi-task network."""
    try:
        values = {name: TEXT_FORMS[name][1](v) if name in TEXT_FORMS else v for name, v in options.items()}
        typed = {name: values[name] for name in given(ctx)}
        on_command_line = bool(typed)
        if config is not None:  # the file's options count as given; the command line's win
            from mtssl.train.config_file import read_config_file

            typed = read_config_file(config) | typed
        values |= typed
        cfg = resumed_config(Path(values["out"]), typed) if resume else new_config(typed)
        if print_config:
            from mtssl.train.config_file import describe

            typer.echo(describe(cfg, sources(resume, config, on_command_line, cfg)), nl=False)
            return
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


main.__signature__ = command_signature()  # type: ignore[attr-defined]
app.command(cls=HelpCommand)(main)


def sources(resume: bool, config: Path | None, on_command_line: bool, cfg: TrainConfig) -> list[str]:
    """Where a resolved config's values came from, most important first."""
    out = ["the command line"] if on_command_line else []
    out += [f"--config {config}"] if config is not None else []
    out += [f"the run in {cfg.out} (--resume)"] if resume else [f"--preset {cfg.preset}", "the defaults"]
    return out


def new_config(typed: dict[str, Any]) -> TrainConfig:
    """The options given, over the preset's values, over the defaults."""
    from mtssl.train.config_file import resolve_options

    return resolve_options(typed)


def given(ctx: typer.Context) -> list[str]:
    """Options typed on the command line (so a resume can tell them from defaults). Compared by name:
    typer vendors its own copy of click, whose ParameterSource is not click's."""
    return [
        name
        for name in ctx.params
        if name not in COMMAND_OPTIONS and getattr(ctx.get_parameter_source(name), "name", None) == "COMMANDLINE"
    ]


def resumed_config(out: Path, typed: dict[str, Any]) -> TrainConfig:
    """The run's saved config, with the options a resume may change (``RESUME_MAY_CHANGE``) taken from here."""
    from mtssl.train.run_folder import latest_checkpoint

    return merge_for_resume(TrainConfig.from_json(latest_checkpoint(out)[1]["config"]), typed)


if __name__ == "__main__":
    sys.exit(app())
