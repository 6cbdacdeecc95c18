"""The build commands come from the recipe configs: every field is an option, with its comment as help."""

from __future__ import annotations

import dataclasses
import re

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
    assert comments["max_fg"] == "drop frames whose mask covers more than this share of the frame (Pathak et al.)"
    assert comments["min_fg"].endswith("0.03 keeps 77%")  # the comment goes on over two more lines
    assert "min_source_side" not in field_comments(Uncommented)  # no comment there: no invented help


@dataclasses.dataclass(frozen=True)
class Uncommented:
    min_source_side: int = 64


@pytest.mark.parametrize("task", sorted(RECIPES))
def test_every_option_has_plain_help_with_its_default(task):
    """Help in words: every field has a comment, no in-house shorthand, no Python type names, every default."""
    recipe = RECIPES[task]
    base = recipe.variants.configs[next(iter(recipe.variants.configs))] if recipe.variants else recipe.config_type()
    for option in field_options(recipe.config_type, base):
        assert option.help, f"{option.flag} has no help"
        shorthand = re.search(r"\bours\b|\btuned:|deepcontext|method\.md|\bNone\b|DAVIS:", option.help)
        assert shorthand is None, (option.flag, option.help)
    from pipelines.cli import app

    text = " ".join(CliRunner().invoke(app, ["build", task, "--help"], env={"COLUMNS": "200"}).output.split())
    assert "<int>" not in text and "list[" not in text and "tuple[" not in text
    for option in field_options(recipe.config_type, base):
        assert option.flag in text


def test_the_relpos_patch_is_patch_size_as_in_mtssl_train_and_patch_still_works(tmp_path):
    result, captured = invoke("relpos", "--patch-size", "64", tmp_path=tmp_path)
    assert result.exit_code == 0, result.output
    assert captured[0][1].patch == 64  # the config field keeps its name: the config hash depends on it
    result, captured = invoke("relpos", "--patch", "80", tmp_path=tmp_path)
    assert result.exit_code == 0, result.output
    assert captured[0][1].patch == 80
    result, captured = invoke("relpos", "--patch", "80", "--patch-size", "64", tmp_path=tmp_path)
    assert result.exit_code == 2 and not captured and "old name of --patch-size" in result.output
    text = CliRunner().invoke(command_app("relpos", []), ["relpos", "--help"], terminal_width=200).output
    assert "--patch-size" in text and "--patch " not in text  # the old flag is hidden


def test_fields_with_a_fixed_set_of_values_check_them(tmp_path):
    result, captured = invoke("motion", "--mask-preset", "fast", "--mask-combine", "directional", tmp_path=tmp_path)
    assert result.exit_code == 0, result.output
    assert (captured[0][1].mask.preset, captured[0][1].mask.combine) == ("fast", "directional")
    result, captured = invoke("motion", "--mask-preset", "slow", tmp_path=tmp_path)
    assert result.exit_code == 2 and not captured and "ultrafast, fast, medium" in result.output


def test_a_switch_of_the_mask_can_be_turned_off(tmp_path):
    result, captured = invoke("motion", "--no-mask-bidirectional", "--no-mask-grabcut", tmp_path=tmp_path)
    assert result.exit_code == 0, result.output
    assert captured[0][1].mask.bidirectional is False and captured[0][1].mask.grabcut is False
