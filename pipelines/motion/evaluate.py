"""``score-motion``: motion masks of a video tree scored against a folder of ground-truth masks.

Sequences pair by name: a frame folder ``<videos>/.../<seq>/`` or a video file ``<seq>.mp4`` with
``<masks>/<seq>/*.png`` (DAVIS: ``JPEGImages/480p`` with ``Annotations/480p``; the embedded sample:
``videos/`` with ``masks/``). Frames are scored at the working resolution; ground truth is resized
to it (nearest) and any nonzero label is foreground (DAVIS-2017 object ids included).
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

import cv2
import numpy as np
from rich import box
from rich.console import Console
from rich.table import Table

from pipelines.errors import Reject
from pipelines.motion.masks import MaskConfig, make_flow
from pipelines.motion.score import overall, score_sequence
from pipelines.videos import OPEN_END, VideoSource, iter_frames, list_video_tree


def sequence_name(source: VideoSource) -> str:
    path = PurePosixPath(source.relpath)
    return path.name if source.kind == "frames" else path.stem


def load_ground_truth(folder: Path, shape: tuple[int, int]) -> list[np.ndarray]:
    """The folder's PNG masks in numeric order, resized (nearest) to ``shape``, as 0/255 uint8."""
    from pipelines.videos import _frame_order

    masks = []
    for path in sorted(folder.glob("*.png"), key=lambda p: _frame_order(p.name)):
        label = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if label is None:
            raise Reject("corrupt image", f"ground truth {path.name}")
        label = label.max(axis=2) if label.ndim == 3 else label
        resized = cv2.resize(label, (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST)
        masks.append(np.where(resized > 0, 255, 0).astype(np.uint8))
    return masks


def score_source(videos: Path, masks: Path, source: VideoSource, cfg: MaskConfig, size: int, flow) -> dict:
    frames = [f.rgb for f in iter_frames(videos, source, 0, OPEN_END, size)]
    if not frames:
        raise Reject("no frames")
    truth = load_ground_truth(masks / sequence_name(source), frames[0].shape[:2])
    if len(truth) != len(frames):
        raise Reject("frame count mismatch", f"{len(frames)} frames, {len(truth)} ground-truth masks")
    return score_sequence(frames, truth, cfg, flow)


def score_tree(videos: Path, masks: Path, cfg: MaskConfig, size: int = 256) -> dict[str, Any]:
    """Per-sequence and overall J for the method and the naive baseline; unscorable sources listed apart."""
    sequences: dict[str, dict[str, Any]] = {}
    skipped: dict[str, str] = {}
    flow = make_flow(cfg)
    for source in list_video_tree(videos):
        name = sequence_name(source)
        if source.kind == "other":
            skipped[source.relpath] = "not a video"
        elif not any((masks / name).glob("*.png")):
            skipped[source.relpath] = "no ground truth"
        else:
            try:
                sequences[name] = score_source(videos, masks, source, cfg, size, flow)
            except Reject as exc:
                skipped[source.relpath] = str(exc)
    return {"sequences": sequences, "overall": overall(sequences), "skipped": skipped}


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def print_scores(results: dict[str, Any], console: Console) -> None:
    table = Table(
        box=box.SIMPLE,
        padding=(0, 1),
        pad_edge=False,
        collapse_padding=True,
        title="Motion masks: mean IoU (J) of the method and of naive flow magnitude (no camera compensation, "
        "adaptive or fixed threshold)",
    )
    table.add_column("sequence", no_wrap=True, overflow="ellipsis", max_width=18)
    for column in ("n", "kept", "J", "naive", "fixed", "J kept", "naive", "fixed"):
        table.add_column(column, justify="right", no_wrap=True)

    def add(name: str, row: dict[str, Any], style: str | None = None) -> None:
        keys = ("j_all", "naive_j_all", "naive_fixed_j_all", "j_kept", "naive_j_kept", "naive_fixed_j_kept")
        table.add_row(name, str(row["scored"]), str(row["kept"]), *(_fmt(row[k]) for k in keys), style=style)

    for name, row in sorted(results["sequences"].items()):
        add(name, row)
    add("overall", results["overall"], style="bold")
    console.print(table)
    console.print(
        "n: frames scored; J: mean IoU over them, J kept: over those the filter keeps; naive / fixed: flow "
        "magnitude with no camera compensation, adaptive or fixed threshold; overall: mean of the sequences"
    )
    for source, reason in sorted(results["skipped"].items()):
        console.print(f"skipped {source}: {reason}")
