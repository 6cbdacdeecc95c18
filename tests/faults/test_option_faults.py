"""Build options take the form their help shows: list options as comma-separated values, with their defaults."""

from __future__ import annotations

import typer
from typer.testing import CliRunner

from pipelines.build_options import build_command
from pipelines.recipes import RECIPES


def flat(text: str) -> str:
    """Terminal output as one line: rich's panel borders and line wrapping removed."""
    return " ".join(text.replace("│", " ").split())


def motion_app(seen: dict) -> typer.Typer:
    """``build motion``'s own command, with the build replaced by recording the config it would use."""
    app = typer.Typer()

    def run(task, cfg, **common):
        seen["cfg"] = cfg

    app.command()(build_command(RECIPES["motion"], run))
    return app


def test_a_list_option_takes_the_comma_separated_form_its_help_shows(tmp_path):
    seen: dict = {}
    result = CliRunner().invoke(motion_app(seen), ["--videos", str(tmp_path), "--mask-gaps", "1,3"])
    assert result.exit_code == 0, result.output
    assert seen["cfg"].mask.gaps == (1, 3)


def test_a_malformed_list_is_refused_saying_the_form(tmp_path):
    result = CliRunner().invoke(motion_app({}), ["--videos", str(tmp_path), "--mask-gaps", "one,three"])
    assert result.exit_code == 2
    assert "takes comma-separated int values like 1,3; got 'one,three'" in flat(result.output)


def test_the_help_shows_the_list_form_and_every_default(tmp_path):
    text = flat(CliRunner().invoke(motion_app({}), ["--help"]).output)
    assert "--mask-gaps INT,..." in text and "[default: 1,2, or the --quality's]" in text
    assert "list[int]" not in text and "(1,)" not in text
    assert "[default: 0.5" in text or "[default: 0." in text  # the recipe's and mask's defaults are shown


def test_the_quality_option_shows_its_choices_and_refuses_others(tmp_path):
    text = flat(CliRunner().invoke(motion_app({}), ["--help"]).output)
    assert "--quality default|fast" in text
    result = CliRunner().invoke(motion_app({}), ["--videos", str(tmp_path), "--quality", "best"])
    assert result.exit_code == 2 and "must be one of default, fast" in flat(result.output)
