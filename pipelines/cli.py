"""``mtssl-data``: build, inspect and verify pretext shard sets."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from pipelines.imageio import DEFAULT_MAX_PIXELS
from pipelines.progress import console, make_progress
from pipelines.recipes.color import ColorConfig
from pipelines.recipes.exemplar import ExemplarConfig
from pipelines.recipes.relpos import RelposConfig

app = typer.Typer(help=__doc__, no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
build_app = typer.Typer(help="Build the shard set of one pretext task.", no_args_is_help=True)
app.add_typer(build_app, name="build")

Images = Annotated[
    Path,
    typer.Option(
        "--images", help="Image tree (ImageNet layout: class folders of images).", exists=True, file_okay=False
    ),
]
Out = Annotated[Path, typer.Option("--out", help="Output folder of the shard set.")]
Workers = Annotated[int, typer.Option(help="Local Ray workers (CPUs); 0 builds in this process without Ray.", min=0)]
RayAddress = Annotated[str | None, typer.Option("--ray-address", help="Join this Ray cluster instead of a local one.")]
PerShard = Annotated[int, typer.Option("--samples-per-shard", help="Inputs per shard (about 100 KB each).", min=1)]
Seed = Annotated[int, typer.Option(help="Seed of the shard order and of every sample's randomness.")]
Limit = Annotated[int | None, typer.Option(help="Use a random subset of N inputs.", min=1)]
MaxPixels = Annotated[int, typer.Option("--max-pixels", help="Reject images with more pixels (decompression bombs).")]
Overwrite = Annotated[bool, typer.Option(help="Replace a different build found in --out.")]
Quality = Annotated[int, typer.Option("--jpeg-quality", min=50, max=100, help="JPEG quality of stored images.")]


def _run_build(
    task: str,
    images: Path,
    out: Path,
    recipe_config: Any,
    workers: int,
    ray_address: str | None,
    samples_per_shard: int,
    seed: int,
    limit: int | None,
    max_pixels: int,
    overwrite: bool,
) -> None:
    from pipelines.build import build_images
    from pipelines.plan import PlanMismatch

    try:
        report = build_images(
            task,
            images,
            out,
            recipe_config,
            workers=workers,
            ray_address=ray_address,
            overwrite=overwrite,
            seed=seed,
            samples_per_shard=samples_per_shard,
            limit=limit,
            max_pixels=max_pixels,
        )
    except (PlanMismatch, ValueError, FileNotFoundError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    totals = report.manifest["totals"]
    console.print(
        f"{task}: {totals['samples']} samples in {totals['shards']} shards, {totals['rejected']} rejected "
        f"({report.built} shards built, {report.skipped} already done) in {report.seconds:.1f}s -> {out}"
    )
    if report.manifest["rejects"]:
        console.print(f"rejects by reason: {report.manifest['rejects']} (see {out}/rejects.parquet)")


@build_app.command("relpos")
def build_relpos(
    images: Images,
    workers: Workers = 2,
    out: Out = Path("shards/relpos"),
    ray_address: RayAddress = None,
    samples_per_shard: PerShard = 1000,
    seed: Seed = 0,
    limit: Limit = None,
    max_pixels: MaxPixels = DEFAULT_MAX_PIXELS,
    overwrite: Overwrite = False,
    jpeg_quality: Quality = 95,
    patch: Annotated[int, typer.Option(help="Patch side in pixels.")] = RelposConfig.patch,
    gap: Annotated[int, typer.Option(help="Gap between patches in pixels.")] = RelposConfig.gap,
    jitter: Annotated[int, typer.Option(help="Maximum jitter of each patch in pixels.")] = RelposConfig.jitter,
    min_area: Annotated[int, typer.Option(help="Smallest total area images are resized to.")] = RelposConfig.min_area,
    max_area: Annotated[int, typer.Option(help="Largest total area images are resized to.")] = RelposConfig.max_area,
    min_source_side: Annotated[int, typer.Option(help="Reject sources with a shorter side.")] = 192,
) -> None:
    """Relative position: a 3x3 grid of jittered patches per image (Doersch et al. 2015)."""
    cfg = RelposConfig(
        patch=patch,
        gap=gap,
        jitter=jitter,
        min_area=min_area,
        max_area=max_area,
        min_source_side=min_source_side,
        jpeg_quality=jpeg_quality,
    )
    _run_build("relpos", images, out, cfg, workers, ray_address, samples_per_shard, seed, limit, max_pixels, overwrite)


@build_app.command("color")
def build_color(
    images: Images,
    workers: Workers = 2,
    out: Out = Path("shards/color"),
    ray_address: RayAddress = None,
    samples_per_shard: PerShard = 1000,
    seed: Seed = 0,
    limit: Limit = None,
    max_pixels: MaxPixels = DEFAULT_MAX_PIXELS,
    overwrite: Overwrite = False,
    jpeg_quality: Quality = 95,
    size: Annotated[int, typer.Option(help="Side of the square L input; the ab target is a quarter.")] = 256,
    gray_threshold: Annotated[int, typer.Option(help="Flag as grayscale when |ab| never exceeds this.")] = 5,
    min_source_side: Annotated[int, typer.Option(help="Reject sources with a shorter side.")] = 128,
) -> None:
    """Colorization: L input and its ab target as indices into the 313 bins (Zhang et al. 2016)."""
    if size % 4:
        raise typer.BadParameter("--size must be a multiple of 4 (the target is at a quarter resolution)")
    cfg = ColorConfig(
        size=size, gray_threshold=gray_threshold, min_source_side=min_source_side, jpeg_quality=jpeg_quality
    )
    _run_build("color", images, out, cfg, workers, ray_address, samples_per_shard, seed, limit, max_pixels, overwrite)


@build_app.command("exemplar")
def build_exemplar(
    images: Images,
    workers: Workers = 2,
    out: Out = Path("shards/exemplar"),
    ray_address: RayAddress = None,
    samples_per_shard: PerShard = 1000,
    seed: Seed = 0,
    limit: Limit = None,
    max_pixels: MaxPixels = DEFAULT_MAX_PIXELS,
    overwrite: Overwrite = False,
    jpeg_quality: Quality = 95,
    views: Annotated[int, typer.Option(help="Augmented views per image (K).", min=2)] = 4,
    view_size: Annotated[int, typer.Option(help="Side of each view in pixels.")] = 96,
    max_rotation: Annotated[float, typer.Option(help="Largest rotation in degrees.")] = 20.0,
    min_scale: Annotated[float, typer.Option(help="Smallest crop scale.")] = 0.7,
    max_scale: Annotated[float, typer.Option(help="Largest crop scale.")] = 1.4,
    min_source_side: Annotated[int, typer.Option(help="Reject sources with a shorter side.")] = 64,
) -> None:
    """Exemplar: K strongly augmented views per image (Dosovitskiy et al. 2014)."""
    cfg = ExemplarConfig(
        views=views,
        view_size=view_size,
        max_rotation=max_rotation,
        scale_range=(min_scale, max_scale),
        min_source_side=min_source_side,
        jpeg_quality=jpeg_quality,
    )
    _run_build(
        "exemplar", images, out, cfg, workers, ray_address, samples_per_shard, seed, limit, max_pixels, overwrite
    )


@app.command()
def sample(
    out: Annotated[Path, typer.Option("--out", help="Folder for the sample data.")] = Path("data/sample"),
    per_class: Annotated[int, typer.Option(help="Images per photo (class).", min=1)] = 24,
    seed: Annotated[int, typer.Option(help="Seed of the random crops.")] = 0,
) -> None:
    """Write the embedded sample: an image tree cut from scikit-image's photographs (no download)."""
    from pipelines.sample import write_image_sample

    paths = write_image_sample(out / "images", per_class=per_class, seed=seed)
    console.print(f"wrote {len(paths)} images in {len({p.parent for p in paths})} class folders to {out / 'images'}")


def _load(shard_dir: Path) -> dict:
    from pipelines.inspect import ShardSetError, load_manifest

    try:
        return load_manifest(shard_dir)
    except ShardSetError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc


@app.command()
def info(shard_dir: Annotated[Path, typer.Argument(help="A shard set folder (holds manifest.json).")]) -> None:
    """Counts, sizes and rejects by reason of a shard set."""
    from pipelines.inspect import reject_table, summarize_rejects

    manifest = _load(shard_dir)
    totals = manifest["totals"]
    table = Table(title=f"{manifest['task']} shard set: {shard_dir}", show_header=False)
    rows = [
        ("source", f"{manifest['source']['root']} ({manifest['source']['inputs']} inputs)"),
        ("samples", f"{totals['samples']:,} in {totals['shards']} shards"),
        ("size", f"{totals['bytes'] / 1e6:,.1f} MB ({totals['bytes_per_sample'] or 0:,.0f} bytes per sample)"),
        ("rejected", f"{totals['rejected']:,}"),
        ("config hash", manifest["config_hash"]),
        ("schema version", str(manifest["schema_version"])),
    ]
    for key, value in rows:
        table.add_row(key, value)
    for reason, count in summarize_rejects(reject_table(shard_dir)).items():
        table.add_row(f"  rejected: {reason}", f"{count:,}")
    console.print(table)


@app.command()
def verify(shard_dir: Annotated[Path, typer.Argument(help="A shard set folder (holds manifest.json).")]) -> None:
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


@app.command()
def preview(
    shard_dir: Annotated[Path, typer.Argument(help="A shard set folder (holds manifest.json).")],
    out: Annotated[Path, typer.Option("--out", help="PNG file to write.")] = Path("preview.png"),
    count: Annotated[int, typer.Option(help="Samples to show.", min=1)] = 6,
) -> None:
    """A contact sheet of the first samples: patch grid with labels, L beside its ab target, the views."""
    from pipelines.preview import write_contact_sheet

    _load(shard_dir)
    console.print(f"wrote {write_contact_sheet(shard_dir, out, count)}")


@app.command()
def demo(
    data: Annotated[Path, typer.Option(help="Where to write the sample data.")] = Path("data/sample"),
    shards: Annotated[Path, typer.Option(help="Where to write the shard sets.")] = Path("shards"),
    workers: Workers = 2,
) -> None:
    """The main job on the embedded sample: write it, build every image task with Ray, verify, preview."""
    sample(out=data, per_class=24, seed=0)
    configs = {"relpos": RelposConfig(), "color": ColorConfig(), "exemplar": ExemplarConfig()}
    for task, cfg in configs.items():
        _run_build(task, data / "images", shards / task, cfg, workers, None, 100, 0, None, DEFAULT_MAX_PIXELS, False)
        verify(shards / task)
        preview(shards / task, out=shards / task / "preview.png", count=6)
    console.print(f"done: inspect with `mtssl-data info {shards}/relpos`; contact sheets in {shards}/*/preview.png")


if __name__ == "__main__":
    app()
