"""The ``mtssl-data build TASK`` commands, made from the recipes: one option per recipe config field.

Every field of a recipe's config dataclass becomes an option with the field's name (``view_size`` ->
``--view-size``), its type, its default and, as help, the comment beside it in the source; the fields of
a nested config (motion's ``mask``) get its name as prefix (``--mask-min-fg``) and their own help panel.
A recipe field therefore appears on the CLI without being typed twice. The options every build shares
(source tree, ``--out``, workers, shard size, seed, ...) come first; a recipe with named variants (motion's
``--quality``) gets an option that picks the base config the field options override.
"""

from __future__ import annotations

import dataclasses
import inspect
import io
import tokenize
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

import typer

from pipelines.imageio import DEFAULT_MAX_PIXELS
from pipelines.recipes.base import Recipe

RECIPE_PANEL = "Recipe options"


@dataclass(frozen=True)
class FieldOption:
    """One config field as a CLI option: where it sits in the config (``("mask", "min_fg")``) and its flag."""

    path: tuple[str, ...]
    annotation: Any
    default: Any
    help: str
    panel: str
    item_type: type | None = None  # a list field: typed as one comma-separated string of these

    @property
    def parameter(self) -> str:
        return "_".join(self.path)

    @property
    def flag(self) -> str:
        return "--" + self.parameter.replace("_", "-")


@lru_cache(maxsize=32)
def field_comments(config_type: type) -> dict[str, str]:
    """Field name -> the comment beside it in the class source (continued on ``#``-only lines below)."""
    try:
        source = inspect.getsource(config_type)
    except (OSError, TypeError):
        return {}
    names = {f.name for f in dataclasses.fields(config_type)}
    comments: dict[str, str] = {}
    current, line_start = None, True
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.NAME and line_start:
            current = token.string if token.string in names else None
        if token.type == tokenize.COMMENT and current is not None:
            text = token.string.lstrip("#").strip()
            comments[current] = f"{comments[current]} {text}" if current in comments else text
        if token.type in (tokenize.NEWLINE, tokenize.NL):
            line_start = True
        elif token.type not in (tokenize.INDENT, tokenize.DEDENT, tokenize.COMMENT):
            line_start = False
    return comments


def cli_type(hint: Any) -> Any:
    """The type typer parses for a config field's type: variable-length tuples become lists."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        return list[args[0]]
    if origin in (typing.Union, types.UnionType) and type(None) in args:
        inner = [a for a in args if a is not type(None)]
        return cli_type(inner[0]) if len(inner) == 1 else hint
    return hint


def list_item(hint: Any) -> type | None:
    """The item type of a list option (a variable-length tuple field), else None."""
    kind = cli_type(hint)
    return typing.get_args(kind)[0] if typing.get_origin(kind) is list else None


def parse_list(flag: str, text: str, item: type) -> tuple:
    """``"1,3"`` (or ``"1 3"``) -> ``(1, 3)``: a list option is one comma-separated value, as its help shows."""
    parts = [p for p in text.replace(",", " ").split() if p]
    try:
        values = tuple(item(p) for p in parts)
    except ValueError:
        values = ()
    if not values:
        raise typer.BadParameter(
            f"takes comma-separated {item.__name__} values like 1,3; got {text!r}", param_hint=flag
        )
    return values


def field_options(config_type: type, base: Any, prefix: tuple[str, ...] = (), panel: str = RECIPE_PANEL):
    """Every scalar field of ``config_type`` (nested configs flattened), with ``base``'s values as defaults."""
    hints, comments = typing.get_type_hints(config_type), field_comments(config_type)
    for f in dataclasses.fields(config_type):
        hint, value = hints[f.name], getattr(base, f.name)
        if dataclasses.is_dataclass(hint):
            yield from field_options(hint, value, (*prefix, f.name), f"{f.name.capitalize()} options")
            continue
        item = list_item(hint)
        if item is not None:  # one comma-separated string: "--mask-gaps 1,3"
            shown = ",".join(str(v) for v in value) if isinstance(value, tuple) else value
            yield FieldOption((*prefix, f.name), str, shown, comments.get(f.name, ""), panel, item)
            continue
        yield FieldOption((*prefix, f.name), cli_type(hint), value, comments.get(f.name, ""), panel)


OUT_HELP = "Output folder of the shard set, or a bucket URL (s3://bucket/prefix/TASK; any fsspec URL)."


def common_parameters(recipe: Recipe) -> list[inspect.Parameter]:
    """The options every build takes, its source tree first."""
    videos = recipe.source == "videos"
    source = typer.Option(
        "--videos" if videos else "--images",
        help="Local folder tree of videos and frame folders." if videos else "Local image tree (ImageNet layout).",
        exists=True,
        file_okay=False,
    )
    specs: list[tuple[str, Any, Any, Any]] = [
        ("source", Path, ..., source),
        ("out", str, f"shards/{recipe.name}", typer.Option("--out", help=OUT_HELP, metavar="DIR|URL")),
        ("workers", int, 2, typer.Option(help="Local Ray workers (CPUs); 0 builds in this process.", min=0)),
        ("ray_address", str | None, None, typer.Option("--ray-address", help="Join this Ray cluster.")),
        ("samples_per_shard", int, 1000, typer.Option("--samples-per-shard", help="Inputs per shard.", min=1)),
        ("seed", int, 0, typer.Option(help="Seed of the shard order and of every sample's randomness.")),
        ("limit", int | None, None, typer.Option(help="Use a random subset of N inputs.", min=1)),
        ("overwrite", bool, False, typer.Option(help="Replace a different build found in --out.")),
        (
            "rehash",
            bool,
            False,
            typer.Option(help="Fingerprint every input by its content too, not only size and time."),
        ),
    ]
    if not videos:
        bombs = typer.Option("--max-pixels", help="Reject images with more pixels (decompression bombs).")
        specs.append(("max_pixels", int, DEFAULT_MAX_PIXELS, bombs))
    if recipe.variants is not None:
        names = "|".join(recipe.variants.configs)
        choice = typer.Option(f"--{recipe.variants.option}", help=recipe.variants.help, metavar=f"<{names}>")
        specs.append(("variant", str, next(iter(recipe.variants.configs)), choice))
    return [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=Annotated[kind, option])
        for name, kind, default, option in specs
    ]


def field_parameter(option: FieldOption, variants: bool) -> inspect.Parameter:
    """A field's option. With variants its default is None (the chosen variant's value), shown as the first's."""
    help_ = option.help or option.parameter.replace("_", " ")
    if variants:
        shown = option.default if option.item_type is not None else repr(option.default)
        help_ = f"{help_} \\[default: {shown}, or the --quality's]"  # escaped: rich reads [...] as markup
    metavar = f"{option.item_type.__name__.upper()},..." if option.item_type is not None else None
    flag = typer.Option(
        option.flag, help=help_, rich_help_panel=option.panel, show_default=not variants, metavar=metavar
    )
    default = None if variants else option.default
    annotation = option.annotation | None if variants else option.annotation
    return inspect.Parameter(
        option.parameter, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=Annotated[annotation, flag]
    )


def build_command(recipe: Recipe, run: Callable[..., None]) -> Callable[..., None]:
    """A typer command for ``recipe``: parses the options, makes the config, calls ``run(task, cfg, **common)``.

    An option left at None keeps the base config's value (the chosen variant's, or the recipe default's)."""
    variants = recipe.variants.configs if recipe.variants is not None else {}
    first = next(iter(variants.values())) if variants else recipe.config_type()
    options = list(field_options(recipe.config_type, first))

    def command(**values: Any) -> None:
        name = values.pop("variant", None)
        if name is not None and name not in variants:
            raise typer.BadParameter(f"must be one of {', '.join(variants)}", param_hint=f"--{recipe.variants.option}")
        base = variants[name] if name is not None else first
        given = {o.path: values.pop(o.parameter) for o in options}
        for o in options:
            if o.item_type is not None and given[o.path] is not None:
                given[o.path] = parse_list(o.flag, given[o.path], o.item_type)
        try:
            cfg = with_values(base, {path: value for path, value in given.items() if value is not None})
        except (ValueError, TypeError) as exc:
            raise typer.BadParameter(str(exc)) from None
        run(recipe.name, cfg, **values)

    parameters = [*common_parameters(recipe), *(field_parameter(o, bool(variants)) for o in options)]
    command.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    command.__doc__ = summary(recipe)
    return command


def with_values(config: Any, values: dict[tuple[str, ...], Any], prefix: tuple[str, ...] = ()) -> Any:
    """``config`` with the values given by field path put in (lists back to tuples, nested configs rebuilt)."""
    changes = {}
    for f in dataclasses.fields(config):
        value, path = getattr(config, f.name), (*prefix, f.name)
        if dataclasses.is_dataclass(value):
            changes[f.name] = with_values(value, values, path)
        elif path in values:
            changes[f.name] = tuple(values[path]) if isinstance(values[path], list) else values[path]
    return dataclasses.replace(config, **changes) if changes else config


def summary(recipe: Recipe) -> str:
    """The command's help: the first paragraph of the recipe module's docstring."""
    doc = inspect.getmodule(recipe.make_sample).__doc__ or recipe.name
    return " ".join(doc.strip().split("\n\n")[0].split())
