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
from typing import Annotated, Literal

import typer

from mtssl.cli_style import HelpCommand, fail, make_app

HELP = (  # the module docstring's words, without its reST quoting (rich shows help text as it is)
    "Did pretraining help? Probes of frozen features, and the motion head as a segmenter.\n\n"
    "probe: a linear classifier and a k-NN on the frozen features of a trained trunk, per feature "
    "source, beside the same protocol on randomly initialised trunks of the same shape.\n\n"
    "motion: the trained motion head as a single-frame segmenter on DAVIS-layout data, J per "
    "sequence, beside the flow masks."
)

app = make_app(help=HELP, no_args_is_help=True)

TRUNK, IMAGES, PROBE, MACHINE = "Trunk", "Labelled images", "Probe", "Output and machine"  # probe's help panels
DEFAULT_MOTION_SIZE = 256  # mtssl.eval.motion.DEFAULT_SIZE (not imported: --help stays fast)

DEVICE_HELP = "auto (CUDA when available), cpu, cuda or cuda:N."
JSON_HELP = "Also write the results as JSON to this file (accuracies as fractions 0..1)."

PROBE_EPILOG = (  # the image types are mtssl.eval.folders.IMAGE_SUFFIXES (not imported: --help stays fast)
    "A labelled folder holds one sub-folder of images per class. The probe reads .jpg, .jpeg, .png, .bmp, "
    ".gif (first frame), .tif, .tiff and .webp files. Every other file (another type, a hidden file, anything "
    "but a regular file, an image that does not decode) is skipped and reported: one line per reason on stderr, "
    "each file in the JSON's skipped. A class folder without an image the probe reads is refused."
)


@app.command(cls=HelpCommand, epilog=PROBE_EPILOG)
def probe(
    run: Annotated[
        Path | None,
        typer.Option(
            file_okay=False,
            help="Run folder: reads RUN/trunk.pt, writes RUN/probe-DATA.json, and adds the scores to "
            "RUN/tensorboard/ when the run has one.",
            rich_help_panel=TRUNK,
        ),
    ] = None,
    trunk: Annotated[
        Path | None, typer.Option(help="A trunk.pt file, instead of --run.", dir_okay=False, rich_help_panel=TRUNK)
    ] = None,
    norms: Annotated[
        Literal["own", "data"],
        typer.Option(
            help="The trained trunk's BN statistics: own (as trained) or data (re-estimated on the train split, "
            "as the random-init baselines' always are).",
            rich_help_panel=TRUNK,
        ),
    ] = "own",
    train: Annotated[
        Path | None,
        typer.Option(
            file_okay=False, help="Labelled train folder: one sub-folder of images per class.", rich_help_panel=IMAGES
        ),
    ] = None,
    val: Annotated[
        Path | None,
        typer.Option(
            file_okay=False, help="Labelled validation folder, with the classes of --train.", rich_help_panel=IMAGES
        ),
    ] = None,
    images: Annotated[
        Path | None,
        typer.Option(
            file_okay=False,
            help="One labelled folder, split into train and validation by --split and --seed (instead of --train "
            "and --val).",
            rich_help_panel=IMAGES,
        ),
    ] = None,
    split: Annotated[
        float,
        typer.Option(help="Share of --images used for training.", min=0.05, max=0.95, rich_help_panel=IMAGES),
    ] = 0.5,
    seed: Annotated[
        int, typer.Option(help="Seed of the --images split and of the linear probe.", rich_help_panel=IMAGES)
    ] = 0,
    size: Annotated[
        int | None,
        typer.Option(
            help="Side images are resized (shorter side) and centre-cropped to. Default: 224, or the train "
            "images' median shorter side where that is smaller (no upscaling).",
            min=16,
            rich_help_panel=IMAGES,
        ),
    ] = None,
    random_seeds: Annotated[
        int,
        typer.Option(help="Randomly initialised trunks for the baseline rows.", min=1, rich_help_panel=PROBE),
    ] = 3,
    knn_k: Annotated[
        int, typer.Option(help="Neighbours of the cosine k-NN (DINO: 20).", min=1, rich_help_panel=PROBE)
    ] = 20,
    feature_dims: Annotated[
        int, typer.Option(help="Pool each source to about this many features.", min=16, rich_help_panel=PROBE)
    ] = 2048,
    eval_l1: Annotated[
        float, typer.Option(help="L1 penalty of the evaluation lasso row.", min=0.0, rich_help_panel=PROBE)
    ] = 1e-2,
    json_out: Annotated[
        Path | None, typer.Option("--json", help=JSON_HELP, dir_okay=False, rich_help_panel=MACHINE)
    ] = None,
    name: Annotated[
        str | None,
        typer.Option(
            help="The dataset's name in the results and in RUN/probe-NAME.json. Default: the labelled folder's "
            "name (the parent's for a folder named train).",
            rich_help_panel=MACHINE,
        ),
    ] = None,
    cache_dir: Annotated[
        Path | None,
        typer.Option(
            file_okay=False,
            help="Feature cache. Default: ~/.cache/mtssl/features (under XDG_CACHE_HOME when set).",
            rich_help_panel=MACHINE,
        ),
    ] = None,
    device: Annotated[str, typer.Option(help=DEVICE_HELP, metavar="DEVICE", rich_help_panel=MACHINE)] = "auto",
    batch_size: Annotated[
        int, typer.Option(help="Images per feature-extraction batch.", min=1, rich_help_panel=MACHINE)
    ] = 64,
) -> None:
    """Linear and k-NN probes per feature source, beside the same protocol on random-init trunks.

    Prints top-1 accuracies as percentages and the margin over random init in points; the JSON keeps fractions.
    """
    from mtssl.eval.probe import ProbeError, ProbeOptions, run_probe
    from mtssl.model.loading import DamagedWeights
    from mtssl.train.config import ConfigError

    try:
        options = ProbeOptions(
            run=run, trunk=trunk, train=train, val=val, images=images, split=split, seed=seed, size=size,
            random_seeds=random_seeds, knn_k=knn_k, feature_dims=feature_dims, eval_l1=eval_l1, json_out=json_out,
            cache_dir=cache_dir, device=device, batch_size=batch_size, norms=norms, name=name,
        )  # fmt: skip
        with interruptible("the features already extracted are cached"):
            run_probe(options)
    except (ProbeError, ConfigError, FileNotFoundError, DamagedWeights) as exc:
        raise fail(str(exc)) from exc


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


@app.command(cls=HelpCommand)
def motion(
    run: Annotated[
        Path,
        typer.Option(file_okay=False, help="Run folder: reads its newest checkpoint, which holds the motion head."),
    ],
    videos: Annotated[
        Path,
        typer.Option(
            file_okay=False,
            help="Folder of sequences: frame folders in the DAVIS JPEGImages layout (SEQUENCE/FRAME.jpg), or "
            "video files (SEQUENCE.mp4).",
        ),
    ],
    masks: Annotated[
        Path,
        typer.Option(file_okay=False, help="Ground-truth masks in the DAVIS Annotations layout (SEQUENCE/FRAME.png)."),
    ],
    size: Annotated[
        int | None,
        typer.Option(
            help="Shorter side frames are resized to. Default: the size of the run's motion shard set "
            f"({DEFAULT_MOTION_SIZE} when it cannot be read).",
            min=16,
        ),
    ] = None,
    flow: Annotated[
        bool, typer.Option(help="Also score the flow masks (mtssl-data score-motion) on the same frames.")
    ] = True,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Also write the results as JSON to this file.", dir_okay=False)
    ] = None,
    device: Annotated[str, typer.Option(help=DEVICE_HELP, metavar="DEVICE")] = "auto",
) -> None:
    """The trained motion head as a single-frame segmenter: J per sequence and overall, beside the flow masks.

    J is the mean IoU of the predicted and ground-truth masks, a fraction from 0 to 1.
    """
    from mtssl.eval.motion import MotionEvalError, evaluate_motion
    from mtssl.model.loading import DamagedWeights
    from mtssl.train.config import ConfigError

    try:
        with interruptible("nothing was written"):
            evaluate_motion(run=run, videos=videos, masks=masks, size=size, flow=flow, json_out=json_out, device=device)
    except (MotionEvalError, ConfigError, FileNotFoundError, DamagedWeights) as exc:
        raise fail(str(exc)) from exc


if __name__ == "__main__":
    sys.exit(app())
