"""How every mtssl command looks and speaks: one help style, one error line, shell completion.

All five programs (``mtssl-data``, ``mtssl-train``, ``mtssl-eval``, ``mtssl-report``, ``mtssl-demo``) make
their typer app with :func:`make_app` and their commands with :class:`HelpCommand`, so that

- help screens are rich panels with defaults, and value types are words (``INTEGER``, ``PATH``), never
  Python type names (``<int>``, ``<list[Path]>``) whatever typer version renders them; flags show no type;
- every mistake, typer's own usage errors included, is one line on stderr, ``error: ...``, with the
  command to read for help, and exit code 2 (usage) or the command's own;
- ``--install-completion`` / ``--show-completion`` install shell completion, and options with choices
  complete them.

Importing this module imports typer and click only (build workers never import it).
"""

from __future__ import annotations

import re
import sys
import typing
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import typer
from typer._click import exceptions as click_errors  # typer 0.29 vendors click: its exceptions are these
from typer.core import TyperArgument, TyperCommand, TyperGroup

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 120}

TYPE_WORDS = {int: "INTEGER", float: "NUMBER", str: "TEXT", bool: "BOOLEAN"}


def type_word(param: Any) -> str:
    """The word shown for a parameter's value: ``INTEGER``, ``NUMBER``, ``TEXT``, ``PATH``, ``a|b``."""
    desc = param.type_descriptor
    if desc.is_choice:
        return "|".join(str(getattr(c, "value", c)) for c in desc.choices)
    if desc.is_path:  # "dir", "file" or "path", by the option's file_okay/dir_okay
        return str(desc.path_type).upper()
    kind = desc.annotation
    if desc.is_list:
        kind = typing.get_args(kind)[0]
    return TYPE_WORDS.get(kind, getattr(kind, "__name__", "VALUE").upper())


def choices_metavar(values: Iterable[Any]) -> str:
    """How an option with a fixed set of values shows them in help, in every program: ``default|fast``."""
    return "|".join(str(v) for v in values)


def plain_metavars(params: Iterable[Any]) -> None:
    """Give every parameter a metavar typer shows as is: none for flags, a word for values; an argument's
    name (``SET``) is its word, so no type is shown beside it."""
    for param in params:
        if isinstance(param, TyperArgument):
            param.display_type_rich = _no_type  # typer would show its Python type beside the name
        if param.metavar is not None:
            continue
        if getattr(param, "is_flag", False):
            param.metavar = ""
        elif isinstance(param, TyperArgument):
            param.metavar = (param.name or "value").upper()
        else:
            param.metavar = type_word(param) + ("..." if param.nargs != 1 else "")


def _no_type(ctx: Any = None) -> None:
    return None


class _OneVoice:
    """Plain metavars in help; typer's own usage errors as one ``error:`` line like the commands' own."""

    def get_params(self, ctx: Any) -> list[Any]:
        params = super().get_params(ctx)  # type: ignore[misc]
        plain_metavars(params)
        return params

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        """``Usage: mtssl-data info [OPTIONS] SET`` (typer 0.29 writes ``{SET}``)."""
        pieces = super().collect_usage_pieces(ctx)  # type: ignore[misc]
        return [re.sub(r"^\{(.+)\}(\.\.\.)?$", r"\1\2", piece) for piece in pieces]

    def main(
        self,
        args: Any = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)  # type: ignore[misc]
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)  # type: ignore[misc]
        except click_errors.NoArgsIsHelpError as exc:  # help was asked for by giving nothing: shown
            typer.echo(exc.ctx.get_help() if exc.ctx else "", err=True)
            sys.exit(2)
        except click_errors.ClickException as exc:
            sys.exit(error_line(exc))
        except typer.Abort:
            typer.echo("aborted", err=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


def error_line(exc: click_errors.ClickException) -> int:
    """Print a click/typer error as ``error: ... (see COMMAND --help)``; return its exit code."""
    message = " ".join(exc.format_message().split())
    ctx = getattr(exc, "ctx", None)
    hint = f" (see {ctx.command_path} --help)" if isinstance(exc, click_errors.UsageError) and ctx is not None else ""
    typer.echo(f"error: {message}{hint}", err=True)
    return exc.exit_code


class HelpCommand(_OneVoice, TyperCommand):
    """The command class of every mtssl command."""


class HelpGroup(_OneVoice, TyperGroup):
    """The group class of every mtssl program with sub-commands."""


class ConfigFileError(ValueError):
    """A ``--config`` file that cannot be read as a mapping of options; its message is one line."""


def read_config_mapping(path: Path) -> dict[str, Any]:
    """The mapping of a ``--config`` file (YAML; JSON is YAML too), ``{}`` for an empty file; what the
    programs' ``--config`` options share before each checks the keys against its own options."""
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise ConfigFileError(f"--config {path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" (line {where.line + 1})" if where is not None else ""
        raise ConfigFileError(f"--config {path}: not valid YAML{line}: {getattr(exc, 'problem', exc)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigFileError(
            f"--config {path}: holds a {type(data).__name__}, not a mapping of option names to values"
        )
    return data


def make_app(help: str | None = None, **settings: Any) -> typer.Typer:
    """A typer app in the house style: rich help panels, completion, one error voice, ``-h``."""
    options: dict[str, Any] = {
        "help": help,
        "cls": HelpGroup,
        "pretty_exceptions_enable": False,
        "add_completion": True,
        "rich_markup_mode": "rich",
        "context_settings": CONTEXT_SETTINGS,
    }
    return typer.Typer(**(options | settings))


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print one ``error:`` line on stderr and return the Exit to raise (``raise fail(...)``)."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def complete_from(values: Callable[[], Iterable[str]], separator: str | None = None):
    """A typer ``autocompletion`` over ``values()``; with ``separator`` (``,``) it completes the last item of
    a comma-separated list (``--tasks relpos,co<TAB>``)."""

    def complete(incomplete: str) -> list[str]:
        head, last = "", incomplete
        if separator and separator in incomplete:
            head, last = incomplete.rsplit(separator, 1)
            head += separator
        return [head + v for v in values() if v.startswith(last)]

    return complete
