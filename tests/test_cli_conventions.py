"""Every command of the five programs speaks the house style (``mtssl.cli_style``): help screens without
Python type names, ``-h``, shell completion, one ``error:`` line for a usage mistake."""

from __future__ import annotations

import importlib
import re

import pytest
import typer
from typer.testing import CliRunner

PROGRAMS = {
    "mtssl-data": "pipelines.cli",
    "mtssl-train": "mtssl.train.cli",
    "mtssl-eval": "mtssl.eval.cli",
    "mtssl-report": "mtssl.report.cli",
    "mtssl-demo": "mtssl.demo",
    "mtssl-sweep": "mtssl.sweep.cli",
}
PYTHON_TYPES = re.compile(r"<(int|str|bool|float|path|dir|file|list\[.*?\])>|list\[|\{[A-Z_]+\}|NoneType|Optional\[")


def app_of(program: str) -> typer.Typer:
    return importlib.import_module(PROGRAMS[program]).app


def command_paths(program: str) -> list[tuple[str, ...]]:
    """Every command of a program, as the words that reach it (hidden ones too)."""
    root = typer.main.get_command(app_of(program))
    paths: list[tuple[str, ...]] = []

    def walk(command, path: tuple[str, ...]) -> None:
        paths.append(path)
        for name, sub in sorted(getattr(command, "commands", {}).items()):
            walk(sub, (*path, name))

    walk(root, ())
    return paths


ALL_COMMANDS = [(program, path) for program in PROGRAMS for path in command_paths(program)]


@pytest.mark.parametrize("program, path", ALL_COMMANDS, ids=[" ".join((p, *c)) for p, c in ALL_COMMANDS])
def test_every_help_screen_is_in_the_house_style(program, path):
    runner = CliRunner()
    result = runner.invoke(app_of(program), [*path, "--help"], env={"COLUMNS": "160", "NO_COLOR": "1"})
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert "Usage:" in text and "╭─" in text, "rich help panels, as every program"
    assert not PYTHON_TYPES.findall(text), f"Python type names in help: {PYTHON_TYPES.findall(text)}"
    assert "``" not in text, "raw reStructuredText backticks in help"
    short = runner.invoke(app_of(program), [*path, "-h"], env={"COLUMNS": "160"})
    assert short.exit_code == 0 and short.stdout == result.stdout
    if not path:
        assert "--install-completion" in text, "shell completion on every program"


@pytest.mark.parametrize("program", list(PROGRAMS))
def test_an_unknown_option_is_one_error_line_with_exit_2(program):
    leaf = max(command_paths(program), key=len)
    result = CliRunner().invoke(app_of(program), [*leaf, "--no-such-option"])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: No such option: --no-such-option"), lines
    assert lines[0].endswith("--help)")


def test_the_out_option_has_the_same_short_flag_everywhere():
    for program, path in ALL_COMMANDS:
        command = typer.main.get_command(app_of(program))
        for word in path:
            command = command.commands[word]
        for param in command.params:
            if "--out" in getattr(param, "opts", ()):
                assert "-o" in param.opts, f"{program} {' '.join(path)}: --out without -o"
