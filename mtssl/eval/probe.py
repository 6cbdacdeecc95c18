"""``mtssl-eval probe``: linear and k-NN probes of a frozen trunk, always beside random-init baselines.

For every feature source (``mtssl.eval.features``) and the evaluation lasso row, a cross-validated
logistic regression and DINO's cosine k-NN are trained on the train split and scored on the validation
split; the same protocol runs on ``random_seeds`` randomly initialised trunks of the same shape, and each
source reports the mean and spread over them. A number without its baseline row means nothing.

Features are extracted once per (trunk bytes, image bytes and labels, size, pooling) and cached, so
re-running a probe (another k, another split of the same files) costs only the classifiers.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mtssl.eval.classifiers import Scores, knn_probe, learn_eval_lasso, linear_probe, mix
from mtssl.eval.features import (
    FeatureSet,
    cache_key,
    cached,
    default_cache_dir,
    extract_features,
    file_hash,
    random_trunk,
    recalibrate_norms,
)
from mtssl.eval.folders import (
    Labelled,
    data_hash,
    list_labelled,
    load_images,
    no_image_message,
    split_labelled,
    typical_side,
)
from mtssl.model.loading import LoadedTrunk, load_trunk
from mtssl.train.distributed import resolve_device

EVAL_ROW = "eval_lasso"
TENSORBOARD_DIR = "tensorboard"  # RUN/tensorboard/: mtssl.train.tensorboard.TB_DIR, where --tensorboard writes
DEFAULT_SIDE = 224  # the usual linear-evaluation crop (ImageNet: shorter side 256, centre crop 224)
SMALLEST_SIDE = 32  # block 3 has stride 16: at 32 px its maps are 2 x 2


class ProbeError(ValueError):
    """The probe's options or inputs cannot give a result."""


@dataclass(frozen=True)
class ProbeOptions:
    """Every option of ``mtssl-eval probe`` (see its ``--help``)."""

    run: Path | None = None
    trunk: Path | None = None
    train: Path | None = None
    val: Path | None = None
    images: Path | None = None
    split: float = 0.5
    seed: int = 0
    size: int | None = None  # None: probe_side (224, or the images' own side where they are smaller)
    random_seeds: int = 3
    knn_k: int = 20
    feature_dims: int = 2048
    eval_l1: float = 1e-2
    json_out: Path | None = None
    cache_dir: Path | None = None
    device: str = "auto"
    batch_size: int = 64
    norms: str = "own"  # the trained trunk's BN statistics: "own" (as trained) or "data" (see NORMS)
    name: str | None = None  # the dataset's name in the results and in RUN/probe-NAME.json; None: the folder's
    quiet: bool = False


NORMS = {
    "own": "the trained trunk keeps the BN statistics it was trained with (the frozen trunk as it is)",
    "data": "the trained trunk's BN statistics are re-estimated on the probe's train split, as its random-init "
    "baselines' always are: the same treatment on both sides, so a shift of domain between pretraining "
    "and probe data is not counted against the pretrained trunk",
}


@dataclass
class Split:
    """The decoded images and labels of the train and validation splits."""

    train_images: np.ndarray
    train_labels: np.ndarray
    val_images: np.ndarray
    val_labels: np.ndarray
    classes: tuple[str, ...]
    name: str
    hash: str
    skipped: dict[str, str]
    size: int = DEFAULT_SIDE  # the side the images were resized and cropped to


def run_probe(options: ProbeOptions) -> dict[str, Any]:
    """Probe the trunk and its random-init baselines; print the table; write the JSON; return the result."""
    if options.norms not in NORMS:  # the options first: a mistake is one line before any work
        raise ProbeError(f"--norms must be one of {', '.join(NORMS)}, not {options.norms!r}")
    resolve_device(options.device)
    trunk_path = resolve_trunk(options)
    loaded = load_trunk(trunk_path)
    data = load_split(options)
    if not options.quiet:
        print_skipped(data.skipped)
    cache = options.cache_dir or default_cache_dir()
    started = time.perf_counter()

    own = options.norms == "own"
    key = cache_key("trunk", file_hash(trunk_path), data.hash, data.size, options.feature_dims)
    if not own:  # the batch size too: the norms are recalibrated with batch statistics
        key = cache_key(key, "norms=data", options.batch_size)
    trained, hit = cached(cache, key, lambda: features_of(loaded, data, options, recalibrate=not own))
    extract_s = time.perf_counter() - started
    scores = probe_sources(trained, data, options)
    alpha = scores.pop("_alpha", None)

    baselines = []
    network_json = json.dumps(asdict(loaded.network), sort_keys=True)
    for seed in range(options.random_seeds):
        rkey = cache_key(  # the batch size too: the norms are recalibrated with batch statistics
            "random", network_json, loaded.rows, seed, data.hash, data.size, options.feature_dims, options.batch_size
        )
        rand = random_trunk(loaded.network, loaded.rows, seed)
        features, _ = cached(cache, rkey, lambda r=rand: features_of(r, data, options, recalibrate=True))
        rscores = probe_sources(features, data, options)
        rscores.pop("_alpha", None)
        baselines.append(rscores)

    result = summarise(scores, baselines, data, options, trunk_path, loaded)
    result["eval_lasso"] = {"weights": [round(float(a), 5) for a in alpha]} if alpha is not None else None
    images = len(data.train_images) + len(data.val_images)
    result["timing"] = {
        "features_cached": hit,
        "extract_s": round(extract_s, 2),
        "extract_images_per_s": None if hit else round(images / max(extract_s, 1e-9), 1),
        "total_s": round(time.perf_counter() - started, 2),
    }
    write_outputs(result, options)
    if options.run is not None:
        result["tensorboard"] = write_tensorboard(result, Path(options.run), quiet=options.quiet)
    if not options.quiet:
        print_table(result)
    return result


# ---- inputs ------------------------------------------------------------------------------------------


def resolve_trunk(options: ProbeOptions) -> Path:
    if (options.run is None) == (options.trunk is None):
        raise ProbeError("give exactly one of --run RUN (reads RUN/trunk.pt) or --trunk PATH")
    path = options.trunk if options.trunk is not None else Path(options.run) / "trunk.pt"
    if not Path(path).is_file():
        raise ProbeError(f"no trunk at {path}: mtssl-train writes RUN/trunk.pt at every checkpoint")
    return Path(path)


def dataset_name(options: ProbeOptions) -> str:
    if options.name:
        return options.name
    if options.images is not None:
        return Path(options.images).resolve().name
    train = Path(options.train).resolve()
    return train.parent.name if train.name.lower() in ("train", "training") else train.name


def labelled_splits(options: ProbeOptions) -> tuple[Labelled, Labelled]:
    if options.images is not None:
        if options.train is not None or options.val is not None:
            raise ProbeError("give either --images DIR (split by --split/--seed) or --train DIR --val DIR")
        return split_labelled(list_labelled(options.images), options.split, options.seed)
    if options.train is None or options.val is None:
        raise ProbeError("give labelled images: --train DIR --val DIR, or --images DIR --split 0.5 --seed S")
    train = list_labelled(options.train)
    val = list_labelled(options.val, classes=train.classes)
    return train, val


def load_split(options: ProbeOptions) -> Split:
    train, val = labelled_splits(options)
    if len(train) == 0 or len(val) == 0:
        raise ProbeError(f"empty split: {len(train)} train and {len(val)} validation images")
    size = probe_side(options, train)
    train_images, train_labels, train = load_images(train, size)
    val_images, val_labels, val = load_images(val, size)
    if options.images is not None:
        refuse_classes_without_images(Path(options.images), train, val)
    else:
        refuse_classes_without_images(Path(options.train), train)
        refuse_classes_without_images(Path(options.val), val)
    if len(np.unique(train_labels)) < 2:
        raise ProbeError(f"the train images that decode are of {len(np.unique(train_labels))} class; a probe needs 2")
    skipped = {**train.skipped, **val.skipped}
    name = dataset_name(options)
    return Split(
        train_images, train_labels, val_images, val_labels, train.classes, name, data_hash(train, val), skipped, size
    )


def refuse_classes_without_images(root: Path, *parts: Labelled) -> None:
    """A class folder none of whose files decodes is refused, as an empty one is when listing: a class
    without a single example would still count in the probe (and in its chance level)."""
    decoded = {label for part in parts for label in part.labels}
    for label, name in enumerate(parts[0].classes):
        if label not in decoded:
            folder = root / name
            skips = {path: why for part in parts for path, why in part.skipped.items()}
            raise ProbeError(no_image_message(folder, {p: w for p, w in skips.items() if folder in Path(p).parents}))


def probe_side(options: ProbeOptions, train: Labelled) -> int:
    """``--size`` when given; else 224, or the train images' median shorter side where that is smaller.

    Images are not upscaled by default: a 128-px image at 224 holds no more detail, costs three times the
    compute, and shows the trunk its content at a scale it was not trained at. The embedded labelled sets
    are written at the side they are meant to be probed at (docs/sample-data.md).
    """
    if options.size is not None:
        return options.size
    side = typical_side(train)
    return DEFAULT_SIDE if side is None else max(SMALLEST_SIDE, min(DEFAULT_SIDE, side))


# ---- features and classifiers --------------------------------------------------------------------------


def features_of(loaded: LoadedTrunk, data: Split, options: ProbeOptions, recalibrate: bool) -> dict[str, FeatureSet]:
    if recalibrate:
        recalibrate_norms(loaded, data.train_images, options.batch_size, options.device)
    run = dict(dims=options.feature_dims, batch_size=options.batch_size, device=options.device)
    return {
        "train": extract_features(loaded, data.train_images, **run),
        "val": extract_features(loaded, data.val_images, **run),
    }


def probe_sources(features: dict[str, FeatureSet], data: Split, options: ProbeOptions) -> dict[str, Any]:
    """Linear and k-NN scores per source, the evaluation lasso row's too (its alpha under ``_alpha``)."""
    train, val = features["train"], features["val"]
    sources = dict(train.sources)
    val_sources = dict(val.sources)
    out: dict[str, Any] = {}
    if train.candidates is not None and val.candidates is not None:
        alpha = learn_eval_lasso(train.candidates, data.train_labels, len(data.classes), l1=options.eval_l1)
        sources[EVAL_ROW], val_sources[EVAL_ROW] = mix(train.candidates, alpha), mix(val.candidates, alpha)
        out["_alpha"] = alpha
    classes = len(data.classes)
    for name, train_x in sources.items():
        args = (train_x, data.train_labels, val_sources[name], data.val_labels, classes)
        out[name] = {"linear": linear_probe(*args, seed=options.seed), "knn": knn_probe(*args, k=options.knn_k)}
        out[name]["dims"] = int(train_x.shape[1])
    return out


# ---- results -------------------------------------------------------------------------------------------


def summarise(
    scores: dict[str, Any],
    baselines: list[dict[str, Any]],
    data: Split,
    options: ProbeOptions,
    trunk_path: Path,
    loaded: LoadedTrunk,
) -> dict[str, Any]:
    """The JSON result: per source the trunk's scores and the random-init mean and spread."""
    many = len(data.classes) > 5
    sources: dict[str, dict[str, Any]] = {}
    for name, entry in scores.items():
        row: dict[str, Any] = {"dims": entry["dims"]}
        for clf in ("linear", "knn"):
            mine: Scores = entry[clf]
            rand = [b[name][clf] for b in baselines if name in b]
            row[clf] = round(mine.top1, 4)
            row[f"random_{clf}"] = round(float(np.mean([r.top1 for r in rand])), 4) if rand else None
            row[f"random_{clf}_std"] = round(float(np.std([r.top1 for r in rand])), 4) if rand else None
            if many:
                row[f"{clf}_top5"] = mine.top5
                row[f"random_{clf}_top5"] = round(float(np.mean([r.top5 for r in rand])), 4) if rand else None
        row["linear_C"] = entry["linear"].detail
        sources[name] = row
    return {
        "dataset": data.name,
        "trunk": str(trunk_path),
        "step": loaded.step,
        "network": {k: v for k, v in asdict(loaded.network).items() if k in ("depth", "width", "input_mode", "lasso")},
        "n_train": int(len(data.train_labels)),
        "n_val": int(len(data.val_labels)),
        "classes": list(data.classes),
        "size": data.size,
        "knn_k": options.knn_k,
        "random_seeds": options.random_seeds,
        "norms": options.norms,
        "skipped": data.skipped,
        "sources": sources,
        "best": best_of(sources),
    }


def best_of(sources: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The best (source, classifier) of the trunk and of the random baselines, and the margin between them."""
    mine = max(((row[c], name, c) for name, row in sources.items() for c in ("linear", "knn")), default=None)
    rand = max(
        ((row[f"random_{c}"], name, c) for name, row in sources.items() for c in ("linear", "knn")
         if row.get(f"random_{c}") is not None),
        default=None,
    )  # fmt: skip
    if mine is None:
        return {}
    best = {"source": mine[1], "classifier": mine[2], "acc": mine[0]}
    if rand is not None:
        best |= {"random_source": rand[1], "random_classifier": rand[2], "random_acc": rand[0]}
        best["margin"] = round(mine[0] - rand[0], 4)
    return best


def write_outputs(result: dict[str, Any], options: ProbeOptions) -> list[Path]:
    from mtssl.train.checkpoint import write_text_atomic

    text = json.dumps(result, indent=1, sort_keys=False) + "\n"
    paths = [Path(options.json_out)] if options.json_out is not None else []
    if options.run is not None:
        paths.append(Path(options.run) / f"probe-{result['dataset']}.json")
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, text)
    result["written"] = [str(p) for p in paths]
    return paths


def tensorboard_scalars(result: dict[str, Any]) -> dict[str, float]:
    """The probe's numbers as TensorBoard tags (fractions, as in the JSON and the trainer's accuracies):

    ``probe/DATA/{linear,knn}/SOURCE`` (the trained trunk), ``probe/DATA/{random_linear,random_knn}/SOURCE``
    (the random-init mean), ``probe/DATA/margin/SOURCE`` (the better trained minus the better random-init
    score, as the report's), and ``probe/DATA/best/{acc,random_acc,margin}`` (the JSON's ``best``).
    """
    data = result["dataset"]
    scalars: dict[str, float] = {}
    for name, row in result["sources"].items():
        for key in ("linear", "knn", "random_linear", "random_knn"):
            if row.get(key) is not None:
                scalars[f"probe/{data}/{key}/{name}"] = float(row[key])
        randoms = [row[key] for key in ("random_linear", "random_knn") if row.get(key) is not None]
        if randoms:
            scalars[f"probe/{data}/margin/{name}"] = round(max(row["linear"], row["knn"]) - max(randoms), 4)
    for key in ("acc", "random_acc", "margin"):
        if result["best"].get(key) is not None:
            scalars[f"probe/{data}/best/{key}"] = float(result["best"][key])
    return scalars


def write_tensorboard(result: dict[str, Any], run: Path, quiet: bool = False) -> dict[str, Any] | None:
    """Add the probe's scalars to the run's ``tensorboard/`` folder, when it has one, at the step of the
    probed trunk (``trunk.pt`` is written with each checkpoint: the run's last step once it has ended).

    Returns where and how many, or None: no such folder, the tensorboard package missing (one note on
    stderr) or a folder that cannot be written (one warning on stderr). The JSON is written either way.
    """
    import sys

    folder = Path(run) / TENSORBOARD_DIR
    if not folder.is_dir():
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter  # imports the tensorboard package
    except ImportError:
        if not quiet:
            print(
                f"note: the tensorboard package is not installed: the probe's scalars were not added to {folder} "
                "(pip install 'mtssl[tensorboard]')",
                file=sys.stderr,
            )
        return None
    scalars = tensorboard_scalars(result)
    step = int(result["step"])
    try:
        writer = SummaryWriter(log_dir=str(folder), filename_suffix=f".probe-{result['dataset']}")
        try:
            for tag, value in scalars.items():
                writer.add_scalar(tag, value, global_step=step)
        finally:
            writer.close()
    except OSError as exc:
        print(f"warning: the probe's scalars were not added to {folder}: {exc}", file=sys.stderr)
        return None
    return {"folder": str(folder), "step": step, "scalars": len(scalars)}


def skip_summary(skipped: dict[str, str]) -> list[str]:
    """One line per reason a file was skipped: how many, why, and the first of them (all are in the JSON)."""
    by_reason: dict[str, list[str]] = {}
    for path, reason in skipped.items():
        by_reason.setdefault(reason, []).append(path)
    return [
        f"skipped {len(paths)} file{'s' if len(paths) > 1 else ''}: {reason}; e.g. {paths[0]}"
        for reason, paths in by_reason.items()
    ]


def print_skipped(skipped: dict[str, str]) -> None:
    """``skip_summary`` on stderr, a line each however wide (no wrapping, no markup: paths print as they are)."""
    from rich.console import Console

    console = Console(stderr=True, soft_wrap=True, highlight=False)
    for line in skip_summary(skipped):
        console.print(line, markup=False)


def print_table(result: dict[str, Any]) -> None:
    """The results on stdout: top-1 accuracies as percentages (the JSON keeps fractions), the margin in points."""
    from rich.console import Console
    from rich.table import Table

    from mtssl.eval.percent import percent, percent_spread, points

    title = (
        f"probe on {result['dataset']}: {result['n_train']} train / {result['n_val']} val images, "
        f"{len(result['classes'])} classes, top-1 accuracy"
    )
    table = Table(title=title)
    for column in ("source", "dims", "linear", "k-NN", "random linear", "random k-NN"):
        table.add_column(column, justify="left" if column == "source" else "right")
    for name, row in result["sources"].items():
        rand = [percent_spread(row[f"random_{c}"], row[f"random_{c}_std"], missing="-") for c in ("linear", "knn")]
        table.add_row(name, str(row["dims"]), percent(row["linear"]), percent(row["knn"]), *rand)
    console = Console(highlight=False, soft_wrap=True)  # a line each, however wide: paths stay whole
    console.print(table)
    best = result["best"]
    if "margin" in best:
        console.print(
            f"best: {best['source']} {best['classifier']} {percent(best['acc'])}; best random-init: "
            f"{best['random_source']} {best['random_classifier']} {percent(best['random_acc'])}; "
            f"margin {points(best['margin'])}",
            markup=False,
        )
    timing = result["timing"]
    rate = "cached" if timing["features_cached"] else f"{timing['extract_images_per_s']} images/s"
    console.print(f"features: {rate}; total {timing['total_s']} s")
    for path in result.get("written", []):
        console.print(f"wrote {path}", markup=False)
    if result.get("tensorboard"):
        tb = result["tensorboard"]
        scalars = f"{tb['scalars']} scalars probe/{result['dataset']}/..."
        console.print(f"wrote {scalars} at step {tb['step']} to {tb['folder']}", markup=False)
