"""The ``mtssl-data build TASK`` commands, made from the recipes: one option per recipe config field.

Every field of a recipe's config dataclass becomes an option with the field's name (``view_size`` ->
``--view-size``), its type, its default and, as help, the comment beside it in the source; the fields of
a nested config (motion's ``mask``) get its name as prefix (``--mask-min-fg``) and their own help panel.
A recipe field therefore appears on the CLI without being typed twice. The options every build shares
(source tree, ``--out``, workers, shard size, seed, ...) come first; a recipe with named variants (motion's
``--quality``) gets an option that picks the base config the field options override.

A few flags differ from their field's name, to name one concept as ``mtssl-train`` names it: the field
keeps its name (the config hash and the manifests of finished builds depend on it), the old flag stays as
a hidden alias (:data:`RENAMED`). Fields with a fixed set of values (:data:`CHOICES`) complete and check
them. ``--config FILE.yaml`` gives any option by its snake_case name; the command line wins over the file.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import io
import tokenize
import types
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

import typer

from mtssl.cli_style import ConfigFileError, choices_metavar, read_config_mapping
from pipelines.cli_style import complete_from, fail
from pipelines.imageio import DEFAULT_MAX_PIXELS
from pipelines.motion.config import COMBINE, PRESETS, MaskConfig
from pipelines.recipes.base import Recipe
from pipelines.recipes.relpos import RelposRecipeConfig

RECIPE_PANEL = "Recipe options"

# (config class, field) -> the option's snake_case name, where it differs from the field's: the name
# mtssl-train gives the same concept (relpos.patch_size). The field's own flag stays, hidden, as an alias.
RENAMED: dict[tuple[type, str], str] = {(RelposRecipeConfig, "patch"): "patch_size"}

# (config class, field) -> the values the field takes: the shell completes them, the command checks them.
CHOICES: dict[tuple[type, str], tuple[str, ...]] = {
    (MaskConfig, "preset"): tuple(PRESETS),
    (MaskConfig, "combine"): tuple(COMBINE),
}


def choice_metavar(values: Iterable[str]) -> str:
    """How an option with a fixed set of values shows them in help: ``default|fast`` (the house style's)."""
    return choices_metavar(values)


def default_text(help_: str, shown: str) -> str:
    """Help with its default in words, as typer shows defaults (``[`` escaped: rich reads ``[...]`` as markup)."""
    return f"{help_} \\[default: {shown}]"


@dataclass(frozen=True)
class FieldOption:
    """One config field as a CLI option: where it sits in the config (``("mask", "min_fg")``) and its flag."""

    path: tuple[str, ...]
    annotation: Any
    default: Any
    help: str
    panel: str
    item_type: type | None = None  # a list field: typed as one comma-separated string of these
    choices: tuple[str, ...] | None = None  # the values it takes, when fixed
    name: str | None = None  # the option's snake_case name where it is not the field path's (RENAMED)

    @property
    def parameter(self) -> str:
        return self.name or "_".join(self.path)

    @property
    def flag(self) -> str:
        return "--" + self.parameter.replace("_", "-")

    @property
    def alias(self) -> str | None:
        """The field path's own name, still accepted (hidden) where the option was renamed."""
        return "_".join(self.path) if self.name else None


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


def help_of(comment: str) -> str:
    """A field comment as option help: a capital first letter and a full stop, as the other options' help."""
    text = comment.strip()
    if not text:
        return text
    text = text[0].upper() + text[1:]
    return text if text.endswith((".", "?")) else text + "."


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
        path, help_ = (*prefix, f.name), help_of(comments.get(f.name, ""))
        extra = {"choices": CHOICES.get((config_type, f.name)), "name": RENAMED.get((config_type, f.name))}
        item = list_item(hint)
        if item is not None:  # one comma-separated string: "--mask-gaps 1,3"
            shown = ",".join(str(v) for v in value) if isinstance(value, tuple) else value
            yield FieldOption(path, str, shown, help_, panel, item, **extra)
            continue
        yield FieldOption(path, cli_type(hint), value, help_, panel, **extra)


OUT_HELP = "Output folder of the shard set, or a bucket URL (s3://bucket/prefix/TASK; any fsspec URL)."


def config_help(recipe: Recipe) -> str:
    """``--config``'s help, with examples of this command's keys (a nested setting both ways)."""
    examples, base = ["workers: 8"], recipe.config_type()
    for f in dataclasses.fields(base):
        nested = getattr(base, f.name)
        if dataclasses.is_dataclass(nested):
            inner = dataclasses.fields(nested)[0].name
            value = getattr(nested, inner)
            examples.append(f"{f.name}_{inner}: {value} or {f.name}: {{{inner}: {value}}}")
            break
    else:
        first = dataclasses.fields(base)[0].name
        examples.append(f"{RENAMED.get((type(base), first), first)}: {getattr(base, first)}")
    return (
        f"YAML file of this command's options by their snake_case names ({', '.join(examples)}); the command "
        "line wins over it."
    )


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
        ("out", str, f"shards/{recipe.name}", typer.Option("--out", "-o", help=OUT_HELP, metavar="DIR|URL")),
        (
            "workers",
            int,
            2,
            typer.Option(help="Local Ray workers (CPUs); 0 builds in this process, without Ray.", min=0),
        ),
        (
            "ray_address",
            str | None,
            None,
            typer.Option(
                "--ray-address", help=default_text("Join this Ray cluster (HOST:PORT).", "a local Ray, --workers")
            ),
        ),
        ("samples_per_shard", int, 1000, typer.Option("--samples-per-shard", help="Inputs per shard.", min=1)),
        ("seed", int, 0, typer.Option(help="Seed of the shard order and of every sample's randomness.")),
        ("limit", int | None, None, typer.Option(help=default_text("Use a random subset of N inputs.", "all"), min=1)),
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
        names = tuple(recipe.variants.configs)
        choice = typer.Option(
            f"--{recipe.variants.option}",
            help=recipe.variants.help,
            metavar=choice_metavar(names),
            autocompletion=complete_from(lambda: names),
        )
        specs.append(("variant", str, names[0], choice))
    return [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=Annotated[kind, option])
        for name, kind, default, option in specs
    ]


def shown_default(option: FieldOption) -> str:
    """A default as the command line takes it: ``1,2``, ``medium``, a switch's flag (``mask-grabcut``)."""
    value = option.default
    if value is None:
        return "none"
    if isinstance(value, bool):
        name = option.flag[2:]
        return name if value else f"no-{name}"
    if isinstance(value, tuple):
        return " ".join(str(v) for v in value)
    return str(value)


def field_parameters(option: FieldOption, variants: dict[str, Any]) -> list[inspect.Parameter]:
    """A field's option (and its hidden old name, where renamed). With variants its default is None (the
    chosen variant's value), shown as the first's; "or the --quality's" where the variants differ."""
    help_ = option.help or option.parameter.replace("_", " ").capitalize() + "."
    if variants:
        differ = len({repr(value_at(cfg, option.path)) for cfg in variants.values()}) > 1
        suffix = ", or the --quality's" if differ else ""
        help_ = default_text(help_, shown_default(option) + suffix)
    elif option.default is None:
        help_ = default_text(help_, "none")
    metavar = f"{option.item_type.__name__.upper()},..." if option.item_type is not None else None
    complete = None
    if option.choices is not None:
        metavar, complete = choice_metavar(option.choices), complete_from(lambda: option.choices)
    switch = f"{option.flag}/--no-{option.flag[2:]}" if option.annotation is bool else option.flag  # on and off
    flag = typer.Option(
        switch,
        help=help_,
        rich_help_panel=option.panel,
        show_default=not variants and option.default is not None,
        metavar=metavar,
        autocompletion=complete,
    )
    default = None if variants else option.default
    annotation = option.annotation | None if variants else option.annotation
    parameters = [
        inspect.Parameter(
            option.parameter, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=Annotated[annotation, flag]
        )
    ]
    if option.alias is not None:  # the field's own flag, as builds before the rename spelt it
        old = typer.Option("--" + option.alias.replace("_", "-"), hidden=True, metavar=metavar)
        parameters.append(
            inspect.Parameter(
                alias_parameter(option), inspect.Parameter.KEYWORD_ONLY, default=None,
                annotation=Annotated[option.annotation | None, old],
            )
        )  # fmt: skip
    return parameters


def alias_parameter(option: FieldOption) -> str:
    return f"{option.alias}_alias"


def value_at(config: Any, path: tuple[str, ...]) -> Any:
    for name in path:
        config = getattr(config, name)
    return config


def build_command(recipe: Recipe, run: Callable[..., None]) -> Callable[..., None]:
    """A typer command for ``recipe``: parses the options, makes the config, calls ``run(task, cfg, **common)``.

    An option left at None keeps the base config's value (the chosen variant's, or the recipe default's)."""
    variants = dict(recipe.variants.configs) if recipe.variants is not None else {}
    first = next(iter(variants.values())) if variants else recipe.config_type()
    options = list(field_options(recipe.config_type, first))

    def command(ctx: typer.Context, **values: Any) -> None:
        values.pop("config_file", None)
        name = values.pop("variant", None)
        if name is not None and name not in variants:
            raise typer.BadParameter(f"must be one of {', '.join(variants)}", param_hint=f"--{recipe.variants.option}")
        base = variants[name] if name is not None else first
        given = {o.path: given_value(ctx, o, values) for o in options}
        for o in options:
            value = given[o.path]
            if o.item_type is not None and value is not None:
                given[o.path] = parse_list(o.flag, value, o.item_type)
            if o.choices is not None and value is not None and value not in o.choices:
                raise typer.BadParameter(f"must be one of {', '.join(o.choices)}", param_hint=o.flag)
        try:
            cfg = with_values(base, {path: value for path, value in given.items() if value is not None})
        except (ValueError, TypeError) as exc:
            raise typer.BadParameter(str(exc)) from None
        run(recipe.name, cfg, **values)

    parameters = [
        inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context),
        *common_parameters(recipe),
        *(p for o in options for p in field_parameters(o, variants)),
    ]
    kinds = {p.name: typing.get_args(p.annotation)[0] for p in parameters[1:]}
    items = {o.parameter: o.item_type for o in options if o.item_type is not None}
    items |= {alias_parameter(o): o.item_type for o in options if o.item_type is not None and o.alias}
    config_option = typer.Option(
        "--config",
        "-c",
        help=config_help(recipe),
        metavar="FILE",
        exists=True,
        dir_okay=False,
        is_eager=True,
        callback=config_callback(kinds, items),
    )
    parameters.insert(
        1,
        inspect.Parameter(
            "config_file",
            inspect.Parameter.KEYWORD_ONLY,
            default=None,
            annotation=Annotated[Path | None, config_option],
        ),
    )
    command.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    command.__doc__ = summary(recipe)
    return command


def given_value(ctx: typer.Context, option: FieldOption, values: dict[str, Any]) -> Any:
    """A field option's value (None: not given); a renamed option's old flag counts where the new is not given."""
    value = values.pop(option.parameter)
    if option.alias is None:
        return value
    old = values.pop(alias_parameter(option))
    if old is None:
        return value
    source = ctx.get_parameter_source(option.parameter)
    if getattr(source, "name", "DEFAULT") != "DEFAULT" and value != old:
        old_flag = "--" + option.alias.replace("_", "-")
        raise typer.BadParameter(f"{old_flag} is the old name of {option.flag}: give one of them", param_hint=old_flag)
    return old


# --config FILE.yaml: the options of a build command in a file ------------------------------------------------

WORDS = {int: "an integer", float: "a number", str: "a string", bool: "true or false", Path: "a path"}
PLURALS = {int: "integers", float: "numbers", str: "strings"}


def config_callback(kinds: dict[str, Any], items: dict[str, type]) -> Callable[..., Any]:
    """The ``--config`` option's callback: read the file, check its keys and values, and make them the
    command's defaults (``ctx.default_map``), so the command line wins over the file and the file over the
    options' own defaults. Runs first (the option is eager), before any other option is read."""

    def read(ctx: typer.Context, param: typer.CallbackParam, value: Path | None) -> Path | None:
        if value is None or ctx.resilient_parsing:
            return value
        keys = option_keys(ctx, exclude=param.name)
        given = config_file_values(value, keys, kinds, items)
        ctx.default_map = {**(ctx.default_map or {}), **given}
        return value

    return read


def option_keys(ctx: typer.Context, exclude: str | None) -> dict[str, tuple[str, bool]]:
    """snake_case key -> (parameter name, hidden) for every long option of the command."""
    keys = {}
    for param in ctx.command.params:
        if param.name == exclude:
            continue
        for opt in param.opts:
            if opt.startswith("--"):
                keys[opt[2:].replace("-", "_")] = (param.name, bool(getattr(param, "hidden", False)))
    return keys


def flat_keys(data: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """``{mask: {min_fg: 0.1}}`` -> ``[("mask_min_fg", 0.1)]``: nested settings as their options' names."""
    out = []
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.extend(flat_keys(value, f"{name}_"))
        else:
            out.append((name, value))
    return out


def config_file_values(
    path: Path, keys: dict[str, tuple[str, bool]], kinds: dict[str, Any], items: dict[str, type]
) -> dict[str, Any]:
    """Parameter name -> value of a config file, in the form the command line gives it; one error line on an
    unreadable file, an unknown key (with the close matches) or a value of the wrong kind."""
    try:
        data = read_config_mapping(path)
    except ConfigFileError as exc:
        raise fail(str(exc)) from None
    pairs = flat_keys(data)
    visible = sorted(key for key, (_, hidden) in keys.items() if not hidden)
    unknown = [key for key, _ in pairs if key.replace("-", "_") not in keys]
    if unknown:
        raise fail(f"--config {path}: {'; '.join(unknown_key(key, visible) for key in unknown)}")
    values: dict[str, Any] = {}
    for key, value in pairs:
        name = keys[key.replace("-", "_")][0]
        if name in values:
            raise fail(f"--config {path}: {key} is given twice")
        try:
            values[name] = file_value(key, value, kinds[name], items.get(name))
        except ValueError as exc:
            raise fail(f"--config {path}: {exc}") from None
    return {name: value for name, value in values.items() if value is not None}


def unknown_key(key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(str(key).replace("-", "_"), known, n=3)
    return f"no option {key!r}" + (f" (did you mean {', '.join(close)}?)" if close else "")


def file_value(key: str, value: Any, kind: Any, item: type | None) -> Any:
    """A file's value as the option reads it (a list option: ``[1, 3]`` -> ``"1,3"``); ValueError saying what
    the option takes otherwise. None leaves the option at its default."""
    if value is None:
        return None
    if item is not None:
        parts = value if isinstance(value, list) else [value]
        if isinstance(value, str) or all(is_kind(v, item) for v in parts):
            return value if isinstance(value, str) else ",".join(str(v) for v in parts)
        raise ValueError(f"{key} takes a list of {PLURALS.get(item, 'values')} like [1, 3], got {value!r}")
    kind = cli_type(kind)
    args = typing.get_args(kind)
    if typing.get_origin(kind) is tuple:  # a fixed number of values: scale_range: [0.7, 1.4]
        if isinstance(value, list) and len(value) == len(args) and all(map(is_kind, value, args)):
            return tuple(value)
        words = " and ".join(WORDS.get(a, "a value") for a in args)
        raise ValueError(f"{key} takes a list of {len(args)} values ({words}), got {value!r}")
    if not is_kind(value, kind):
        raise ValueError(f"{key} takes {WORDS.get(kind, 'a value')}, got {value!r}")
    return float(value) if kind is float else str(value) if kind is Path else value


def is_kind(value: Any, kind: Any) -> bool:
    """Whether a YAML value is one of ``kind`` (an integer is a number; true is no integer; a path is a string)."""
    if isinstance(value, bool):
        return kind is bool
    if kind is float:
        return isinstance(value, int | float)
    if kind is Path:
        return isinstance(value, str)
    return isinstance(value, kind) if isinstance(kind, type) else True


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
