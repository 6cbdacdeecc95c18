"""The build commands come from the recipe configs: every field is an option, with its comment as help."""

from __future__ import annotations

import dataclasses

import pytest
import typer
from typer.testing import CliRunner

from pipelines.build_options import build_command, field_comments, field_options
from pipelines.motion.config import QUALITY, MaskConfig
from pipelines.recipes import RECIPES
from pipelines.recipes.exemplar import ExemplarRecipeConfig


def command_app(task: str, captured: list) -> typer.Typer:
    app = typer.Typer()

    def run(name, cfg, **options):
        captured.append((name, cfg, options))

    app.command(task)(build_command(RECIPES[task], run))
    app.command("other")(lambda: None)  # two commands: the task is a subcommand, as under `mtssl-data build`
    return app


def invoke(task: str, *args: str, tmp_path) -> tuple:
    captured: list = []
    source = "--videos" if RECIPES[task].source == "videos" else "--images"
    result = CliRunner().invoke(command_app(task, captured), [task, source, str(tmp_path), *args])
    return result, captured


@pytest.mark.parametrize("task", sorted(RECIPES))
def test_every_config_field_is_an_option_with_its_default(task, tmp_path):
    recipe = RECIPES[task]
    result, captured = invoke(task, tmp_path=tmp_path)
    assert result.exit_code == 0, result.output
    name, cfg, options = captured[0]
    base = recipe.variants.configs[next(iter(recipe.variants.configs))] if recipe.variants else recipe.config_type()
    assert name == task and cfg == base
    assert options["out"] == f"shards/{task}" and options["source"] == tmp_path
    flags = {o.flag for o in field_options(recipe.config_type, base)}
    assert {"--jpeg-quality", "--min-source-side"} <= flags


def test_options_reach_the_config_nested_and_tuples_included(tmp_path):
    result, captured = invoke("exemplar", "--views", "6", "--scale-range", "0.5", "2.0", tmp_path=tmp_path)
    assert result.exit_code == 0, result.output
    assert captured[0][1] == dataclasses.replace(ExemplarRecipeConfig(), views=6, scale_range=(0.5, 2.0))
    result, captured = invoke(
        "motion", "--quality", "fast", "--mask-min-fg", "0.05", "--mask-gaps", "1,4",
        "--stride", "3", tmp_path=tmp_path,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    cfg = captured[0][1]
    assert cfg.stride == 3 and cfg.mask.min_fg == 0.05 and cfg.mask.gaps == (1, 4)
    assert cfg.mask.grabcut is QUALITY["fast"].grabcut is False  # the rest is the chosen quality's


def test_a_bad_value_is_one_clear_error(tmp_path):
    result, captured = invoke("color", "--size", "250", tmp_path=tmp_path)
    assert result.exit_code == 2 and not captured
    assert "multiple of 4" in result.output
    result, _ = invoke("motion", "--quality", "best", tmp_path=tmp_path)
    assert result.exit_code == 2 and "default, fast" in result.output


def test_help_comes_from_the_field_comments_continuation_lines_included():
    comments = field_comments(MaskConfig)
    assert comments["max_fg"] == "Pathak: drop frames with more foreground than this share"
    assert comments["min_fg"].endswith("0.03 keeps 77%)")  # the comment goes on over a second line
    assert "min_source_side" not in field_comments(ExemplarRecipeConfig)  # no comment there: no invented help
