"""``score-motion``: motion masks of a video tree scored against a folder of ground-truth masks.

Sequences pair by name: a frame folder ``<videos>/.../<seq>/`` or a video file ``<seq>.mp4`` with
``<masks>/<seq>/*.png`` (DAVIS: ``JPEGImages/480p`` with ``Annotations/480p``; the embedded sample:
``videos/`` with ``masks/``). Frames are scored at the working resolution; ground truth is resized
to it (nearest) and any nonzero label is foreground (DAVIS-2017 object ids included). The pairing rule, the
ground truth and J are the contract's (``mtssl.contract.frames``), shared with ``mtssl-eval motion``, which runs
this command as a subprocess to score the flow masks beside its head: each sequence's record names its
``source`` for it, and a second source of the same name is skipped, as there.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
from rich import box
from rich.console import Console
from rich.table import Table

from mtssl.contract.frames import SequenceError, SequenceSource, load_ground_truth
from pipelines.errors import Reject
from pipelines.motion.camera import make_flow
from pipelines.motion.clip import clip_mask_at
from pipelines.motion.config import MaskConfig
from pipelines.motion.score import overall, score_sequence
from pipelines.videos import OPEN_END, VideoSource, iter_frames, list_video_tree


def sequence_name(source: VideoSource) -> str:
    return SequenceSource(source.relpath, source.kind).name


def read_mask_config(path: Path, base: MaskConfig) -> MaskConfig:
    """``base`` with the settings of a JSON file of mask settings (as a motion manifest's ``config.recipe.mask``
    holds them). Keys that are no setting are ignored (a set built by another version); ValueError when the
    file is no such object or a value is invalid."""
    saved = json.loads(Path(path).read_text())
    if not isinstance(saved, dict):
        raise ValueError(f"{path} holds no JSON object of mask settings")
    known = {f.name for f in dataclasses.fields(MaskConfig)}
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in saved.items() if k in known}
    try:
        return dataclasses.replace(base, **values)
    except TypeError as exc:
        raise ValueError(f"{path}: {exc}") from exc


SHEET_FRAMES = 3  # frames per sequence on the --sheet picture


def pictures_of(frames: list[np.ndarray], truth: list[np.ndarray], rows: list[dict], cfg: MaskConfig, flow) -> list:
    """(frame, ground truth, mask, IoU) of a few scored frames spread over the sequence, for the sheet."""
    scored = [r for r in rows if not r["gt_empty"]]
    picks = [scored[i] for i in np.linspace(0, len(scored) - 1, min(SHEET_FRAMES, len(scored))).astype(int)]
    out = []
    for row in picks:
        t = row["frame"]
        mask = clip_mask_at(t, lambda i: frames[i] if 0 <= i < len(frames) else None, cfg, flow).mask
        out.append((frames[t], truth[t], mask, row["iou"]))
    return out


def score_source(
    videos: Path, masks: Path, source: VideoSource, cfg: MaskConfig, size: int, flow, pictures: dict | None = None
) -> dict:
    decoded = list(iter_frames(videos, source, 0, OPEN_END, size))
    damaged = next((f for f in decoded if f.damage), None)  # scored frames must be the real ones
    if damaged is not None:
        raise Reject("damaged frame", f"frame {damaged.index}: {damaged.damage}")
    frames = [f.rgb for f in decoded]
    if not frames:
        raise Reject("no frames")
    truth = load_ground_truth(masks / sequence_name(source), frames[0].shape[:2])
    if len(truth) != len(frames):
        raise Reject("frame count mismatch", f"{len(frames)} frames, {len(truth)} ground-truth masks")
    scores = score_sequence(frames, truth, cfg, flow)
    if pictures is not None and scores["scored"]:
        pictures[sequence_name(source)] = pictures_of(frames, truth, scores["frames"], cfg, flow)
    return {"source": source.relpath, **scores}


def score_tree(
    videos: Path, masks: Path, cfg: MaskConfig, size: int = 256, keep_frames: bool = False
) -> dict[str, Any]:
    """Per-sequence and overall scores of the method and the baselines; unscorable sources listed apart.
    With ``keep_frames``, ``"pictures"`` holds a few (frame, truth, mask, IoU) per sequence for the sheet."""
    sequences: dict[str, dict[str, Any]] = {}
    skipped: dict[str, str] = {}
    pictures: dict[str, list] | None = {} if keep_frames else None
    flow = make_flow(cfg)
    for source in list_video_tree(videos):
        name = sequence_name(source)
        if source.kind == "other":
            skipped[source.relpath] = "not a video"
        elif not any((masks / name).glob("*.png")):
            skipped[source.relpath] = "no ground truth"
        elif name in sequences:
            skipped[source.relpath] = "duplicate sequence name"
        else:
            try:
                sequences[name] = score_source(videos, masks, source, cfg, size, flow, pictures)
            except (Reject, SequenceError) as exc:
                skipped[source.relpath] = str(exc)
    out = {"sequences": sequences, "overall": overall(sequences), "skipped": skipped}
    return out if pictures is None else {**out, "pictures": pictures}


def _fmt(value: float | None, share: bool = False) -> str:
    """J, recall and precision as fractions (the field's convention); a share of frames in percent."""
    if value is None:
        return "-"
    return f"{100 * value:.0f}%" if share else f"{value:.3f}"


COLUMNS = (  # header, key
    ("J", "j_all"),
    ("flow", "naive_j_all"),
    ("pan", "translation_j_all"),
    ("kept", "kept_share"),
    ("J kept", "j_kept"),
    ("recall", "recall_kept"),
    ("precision", "precision_kept"),
)


def print_scores(results: dict[str, Any], console: Console) -> None:
    table = Table(
        box=box.SIMPLE,
        padding=(0, 1),
        pad_edge=False,
        collapse_padding=True,
        title="Motion masks against ground truth: J (mean IoU) of the method and of two baselines; "
        "the frames Pathak's filter keeps",
    )
    table.add_column("sequence", no_wrap=True, overflow="ellipsis", max_width=18)
    table.add_column("n", justify="right", no_wrap=True)
    for header, _ in COLUMNS:
        table.add_column(header, justify="right", no_wrap=True)

    def add(name: str, row: dict[str, Any], style: str | None = None) -> None:
        cells = (_fmt(row[key], share=key == "kept_share") for _, key in COLUMNS)
        table.add_row(name, str(row["scored"]), *cells, style=style)

    overall = results["overall"]
    for name, row in sorted(results["sequences"].items()):
        if row["scored"]:
            add(name, row)
    add("overall", overall, style="bold")
    console.print(table)
    console.print(
        "n: frames scored (ground truth not empty); J: mean IoU over them; flow / pan: baselines with no "
        "camera model (flow magnitude; flow minus its median), Otsu's threshold; kept: percentage of frames "
        "the filter keeps, J kept, recall and precision over those; overall: mean of the sequences"
    )
    if overall["empty_gt_frames"]:
        share = overall.get("empty_gt_fg_share")
        console.print(
            f"{overall['empty_gt_frames']} frames with empty ground truth, left out of J"
            + ("" if share is None else f" (the method marks {share:.1%} of them on average)")
        )
    for name in overall["empty_gt_sequences"]:
        console.print(f"{name}: ground truth empty on every frame, reported apart")
    for source, reason in sorted(results["skipped"].items()):
        console.print(f"skipped {source}: {reason}")
