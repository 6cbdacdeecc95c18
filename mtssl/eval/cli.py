"""``mtssl-eval``: did pretraining help? Probes of frozen features, and the motion head as a segmenter.

``mtssl-eval probe`` trains a linear classifier and a k-NN on frozen features of a trained trunk, per
feature source, beside the same protocol on randomly initialised trunks of the same shape.
``mtssl-eval motion`` scores the trained motion head as a single-frame segmenter on DAVIS-layout data.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help=__doc__, pretty_exceptions_enable=False, add_completion=False, no_args_is_help=True)


PROBE_EPILOG = (  # the image types are mtssl.eval.folders.IMAGE_SUFFIXES (not imported: --help stays fast)
    "A labelled folder holds one sub-folder of images per class. The probe reads .jpg, .jpeg, .png, .bmp, "
    ".gif (first frame), .tif, .tiff and .webp files. Every other file (another type, a hidden file, anything "
    "but a regular file, an image that does not decode) is skipped and reported: one line per reason on stderr, "
    "each file in the JSON's skipped. A class folder without an image the probe reads is refused."
)


@app.command(epilog=PROBE_EPILOG)
def probe(
    run: Annotated[Path | None, typer.Option(help="Run folder: reads RUN/trunk.pt, writes RUN/probe-DATA.json")] = None,
    trunk: Annotated[Path | None, typer.Option(help="A trunk.pt file, instead of --run.")] = None,
    train: Annotated[Path | None, typer.Option(help="Labelled train folder: one sub-folder per class.")] = None,
    val: Annotated[Path | None, typer.Option(help="Labelled validation folder, same classes as --train.")] = None,
    images: Annotated[Path | None, typer.Option(help="One labelled folder, split by --split and --seed.")] = None,
    split: Annotated[float, typer.Option(help="Share of --images used for training.", min=0.05, max=0.95)] = 0.5,
    seed: Annotated[int, typer.Option(help="Seed of the --images split.")] = 0,
    size: Annotated[
        int | None,
        typer.Option(
            help="Images are resized (shorter side) and centre-cropped to this side. Default: 224, or the train "
            "images' median shorter side where that is smaller (no upscaling).",
            min=16,
        ),
    ] = None,
    random_seeds: Annotated[int, typer.Option(help="Randomly initialised trunks for the baseline rows.", min=1)] = 3,
    knn_k: Annotated[int, typer.Option(help="Neighbours of the cosine k-NN (DINO: 20).", min=1)] = 20,
    feature_dims: Annotated[int, typer.Option(help="Pool each source to about this many features.", min=16)] = 2048,
    eval_l1: Annotated[float, typer.Option(help="L1 penalty of the evaluation lasso row.", min=0.0)] = 1e-2,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the results as JSON here too.")] = None,
    cache_dir: Annotated[Path | None, typer.Option(help="Feature cache (default: ~/.cache/mtssl/features).")] = None,
    device: Annotated[str, typer.Option(help="auto (CUDA when available), cuda or cpu.")] = "auto",
    batch_size: Annotated[int, typer.Option(help="Images per feature-extraction batch.", min=1)] = 64,
    norms: Annotated[
        str,
        typer.Option(
            help="The trained trunk's BN statistics: own (as trained) or data (re-estimated on the train split, "
            "as the random-init baselines' always are)."
        ),
    ] = "own",
) -> None:
    """Linear and k-NN probes per feature source, beside the same protocol on random-init trunks."""
    from mtssl.eval.probe import ProbeError, ProbeOptions, run_probe
    from mtssl.model.loading import DamagedWeights
    from mtssl.train.config import ConfigError

    try:
        options = ProbeOptions(
            run=run, trunk=trunk, train=train, val=val, images=images, split=split, seed=seed, size=size,
            random_seeds=random_seeds, knn_k=knn_k, feature_dims=feature_dims, eval_l1=eval_l1, json_out=json_out,
            cache_dir=cache_dir, device=device, batch_size=batch_size, norms=norms,
        )  # fmt: skip
        with interruptible("the features already extracted are cached"):
            run_probe(options)
    except (ProbeError, ConfigError, FileNotFoundError, DamagedWeights) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc


@contextmanager
def interruptible(kept: str) -> Iterator[None]:
    """Ctrl-C or SIGTERM end the command in one line (exit 130 / 143), saying what is kept."""
    from mtssl.contract.interrupts import exit_code, signal_name, sigterm_as_interrupt

    try:
        with sigterm_as_interrupt():
            yield
    except KeyboardInterrupt as exc:
        typer.echo(f"interrupted ({signal_name(exc)}); {kept}: rerun the same command", err=True)
        raise typer.Exit(exit_code(exc)) from None


@app.command()
def motion(
    run: Annotated[Path, typer.Option(help="Run folder (reads its newest checkpoint, which holds the motion head).")],
    videos: Annotated[Path, typer.Option(help="Frame folders (DAVIS JPEGImages layout: <seq>/<frame>.jpg).")],
    masks: Annotated[Path, typer.Option(help="Ground-truth masks (DAVIS Annotations layout: <seq>/<frame>.png).")],
    size: Annotated[int | None, typer.Option(help="Shorter side frames are resized to (default: the run's).")] = None,
    flow: Annotated[bool, typer.Option(help="Also score the flow masks (score-motion) on the same frames.")] = True,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the results as JSON here too.")] = None,
    device: Annotated[str, typer.Option(help="auto (CUDA when available), cuda or cpu.")] = "auto",
) -> None:
    """The trained motion head as a single-frame segmenter: J per sequence and overall, beside the flow masks."""
    from mtssl.eval.motion import MotionEvalError, evaluate_motion
    from mtssl.model.loading import DamagedWeights

    try:
        with interruptible("nothing was written"):
            evaluate_motion(run=run, videos=videos, masks=masks, size=size, flow=flow, json_out=json_out, device=device)
    except (MotionEvalError, FileNotFoundError, DamagedWeights) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc


if __name__ == "__main__":
    sys.exit(app())
