"""``mtssl-eval motion``: the trained motion head as a single-frame segmenter, scored on DAVIS-layout data.

Every frame of every sequence that has ground truth goes through the network as training runs it (the
frame at the run's working size, shorter side ``size``; the task's ``prepare`` for the input mode; trunk,
the motion lasso row, the head); the logits are resized bilinearly to the ground-truth mask's size and
``logits > 0`` is the prediction. J is the IoU per frame (any nonzero label is foreground, both empty
scores 1, as in DAVIS), the mean over a sequence's frames, and overall the mean over sequences (Perazzi
et al., CVPR 2016). A sequence whose ground truth is empty on every frame has no object to find: it is
listed apart and left out of the overall mean.

With ``flow`` the flow masks the motion shards are made of (``mtssl-data score-motion``'s method, with the
run's mask settings when its motion manifest is readable, else the defaults) are scored on the same
frames at the same working size. The flow needs a partner frame (t + gap, else t - gap), so it scores a
subset of the frames; the head is reported on every frame **and** on that subset, and on the subset's
frames that Pathak's filter keeps, so each flow number has a head number on the same frames beside it.

The consumer never imports the producer (``tests/test_imports.py``). Pairing, frames, ground truth and J are
the contract's (``mtssl.contract.frames``), which ``score-motion`` reads too: a frame folder
``<videos>/.../<seq>/`` (or a video file ``<seq>.mp4``) with ``<masks>/<seq>/*.png``, frame ``i`` with the
``i``-th mask in numeric order (counts must agree). The flow masks (the producer's method: DIS flow, camera
fits, GrabCut) come through a declared boundary: the producer's own command, ``python -m pipelines.cli
score-motion ... --json FILE``, run as a subprocess, whose per-frame rows are merged by sequence (and by
source, so that both scored the same frames). A sequence that command skips (a damaged frame its decoder
finds in a video file, say) is skipped here too, with its reason.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from mtssl.contract.frames import (
    SequenceError,
    SequenceSource,
    iou,
    list_sequences,
    load_ground_truth,
    read_frames,
)
from mtssl.eval.motion_table import COUNT_KEYS, print_results

DEFAULT_SIZE = 256  # the motion recipe's default working size (pipelines' MotionRecipe.size)


BATCH_SIZE = 16


Predict = Callable[[np.ndarray, tuple[int, int]], "torch.Tensor | np.ndarray"]


class MotionEvalError(Exception):
    """The evaluation cannot run: a missing folder or checkpoint, no motion head, nothing to score."""


def resolve_device(option: str) -> torch.device:
    """``auto``: CUDA when available, else the CPU; ``cuda`` or ``cpu`` to force one."""
    if option == "auto":
        option = "cuda" if torch.cuda.is_available() else "cpu"
    if option not in ("cuda", "cpu") and not option.startswith("cuda:"):
        raise MotionEvalError(f"--device must be auto, cuda or cpu, got {option!r}")
    if option.startswith("cuda") and not torch.cuda.is_available():
        raise MotionEvalError("--device cuda, but torch sees no CUDA device")
    return torch.device(option)


def load_motion_network(run: Path) -> tuple[Any, int]:
    """The run's newest checkpoint as a MultiTaskNet (eval mode, CPU) and its step; it must have a motion head."""
    from mtssl.model.loading import load_network

    run = Path(run)
    if not run.exists():
        raise MotionEvalError(f"run folder {run} does not exist")
    try:
        net, step = load_network(run)
    except FileNotFoundError as exc:
        raise MotionEvalError(f"{exc}: train a run first (mtssl-train --out {run} writes {run}/ckpt-*.pt)") from exc
    if "motion" not in net.tasks:
        raise MotionEvalError(
            f"the run {run} has no motion head (its tasks: {', '.join(net.tasks)}): train with the motion "
            "shard set (mtssl-train --tasks ... motion)"
        )
    return net, step


def motion_recipe(run: Path) -> dict[str, Any] | None:
    """The motion recipe the run trained on: RUN/config.json -> shards -> <shards>/motion/manifest.json."""
    try:
        shards = Path(json.loads((Path(run) / "config.json").read_text())["shards"])
        manifest = json.loads((shards / "motion" / "manifest.json").read_text())
        recipe = manifest["config"]["recipe"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return recipe if isinstance(recipe, dict) else None


def run_size(recipe: dict[str, Any] | None) -> int:
    """The recipe's working size (shorter side), else :data:`DEFAULT_SIZE`."""
    size = (recipe or {}).get("size")
    return int(size) if isinstance(size, int) and size > 0 else DEFAULT_SIZE


def logit_stride(head: Any) -> float:
    """Input pixels per logit of the motion head (trunk stride / the head's pixel-shuffle factor)."""
    return head.stride / max(head.stride // head.config.logit_stride, 1)


def resize_logits(
    logits: torch.Tensor, frame_shape: tuple[int, int], shape: tuple[int, int], stride: float
) -> torch.Tensor:
    """Logits (N,1,h,w) of frames ``frame_shape`` -> (N,height,width) over the ground truth ``shape``.

    The trunk's "SAME" padding rounds each stride up, so ``h * stride`` may exceed the frame's height (a
    side that is not a multiple of 16): the logits are resized so that the frame's extent maps onto the
    mask, and the overhang (bottom, right) is cut off.
    """
    (fh, fw), (gh, gw) = frame_shape, shape
    h, w = logits.shape[-2:]
    th, tw = max(gh, round(h * stride * gh / fh)), max(gw, round(w * stride * gw / fw))
    resized = F.interpolate(logits.float(), size=(th, tw), mode="bilinear", align_corners=False)
    return resized[:, 0, :gh, :gw]


def network_predictor(net: Any, device: torch.device) -> Predict:
    """The motion head of ``net`` as a :data:`Predict`, run as ``MultiTaskNet.task_step`` runs it."""
    head = net.tasks["motion"]
    stride = logit_stride(head)
    mode, channels = net.config.input_mode, net.config.channels
    from mtssl.model.network import autocast

    def predict(frames: np.ndarray, shape: tuple[int, int]) -> torch.Tensor:
        rgb = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).to(device)
        dummy = torch.zeros((rgb.shape[0], 1, *rgb.shape[-2:]), dtype=torch.uint8, device=device)
        x, _ = head.prepare({"rgb": rgb, "mask": dummy}, mode, channels)
        if x.is_cuda and net.config.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.no_grad(), autocast(x.device, net.config.amp):
            logits = head(net.features(x, "motion"))
        return resize_logits(logits, frames.shape[1:3], shape, stride)

    return predict


def score_frames(
    predict: Predict, frames: np.ndarray, truth: list[np.ndarray], batch_size: int = BATCH_SIZE
) -> list[float]:
    """Per-frame IoU of ``predict(frames) > 0`` against ``truth`` (masks of one size, nonzero = foreground)."""
    if len(frames) != len(truth):
        raise ValueError(f"{len(frames)} frames but {len(truth)} masks")
    shape = tuple(truth[0].shape[:2])
    ious: list[float] = []
    for start in range(0, len(frames), batch_size):
        logits = predict(frames[start : start + batch_size], shape)
        pred = (logits > 0).cpu().numpy() if isinstance(logits, torch.Tensor) else np.asarray(logits) > 0
        if pred.shape[1:] != shape:
            raise ValueError(f"the predictor returned {pred.shape[1:]} logits for {shape} masks")
        ious.extend(iou(p, t) for p, t in zip(pred, truth[start : start + batch_size], strict=True))
    return ious


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


FLOW_ROW_KEYS = ("frame", "partners", "iou", "kept", "reason")
BOX = " \u2502\u256d\u256e\u2570\u256f\u2500"  # spaces and the frame rich draws around a usage error


def flow_command(videos: Path, masks: Path, size: int, out: Path, mask_file: Path | None) -> list[str]:
    """The producer's scoring command, run as its own process (``mtssl/demo.py`` runs the producer's demo so)."""
    command = [sys.executable, "-m", "pipelines.cli", "score-motion", "--videos", str(videos), "--masks", str(masks)]
    command += ["--size", str(size), "--json", str(out)]
    return command + (["--mask-config", str(mask_file)] if mask_file is not None else [])


def run_flow(videos: Path, masks: Path, size: int, recipe: dict[str, Any] | None) -> dict[str, Any]:
    """``score-motion``'s JSON for the tree (``config``, ``sequences`` with their ``source`` and per-frame rows,
    ``skipped``), with the recipe's mask settings when it has them; MotionEvalError when the command fails."""
    mask = (recipe or {}).get("mask")
    with tempfile.TemporaryDirectory(prefix="mtssl-flow-") as tmp:
        out, mask_file = Path(tmp) / "scores.json", Path(tmp) / "mask.json" if isinstance(mask, dict) else None
        if mask_file is not None:
            mask_file.write_text(json.dumps(mask))
        command = flow_command(videos, masks, size, out, mask_file)
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0 or not out.is_file():
            said = [line.strip(BOX) for line in (done.stderr + done.stdout).splitlines() if line.strip(BOX)]
            raise MotionEvalError(
                f"the flow scoring (mtssl-data score-motion --videos {videos} --masks {masks} --size {size}) "
                f"failed with exit {done.returncode}: {said[-1] if said else 'no message'}; pass --no-flow to "
                "score the head alone"
            )
        return json.loads(out.read_text())


def flow_rows(scored: dict[str, Any], name: str, relpath: str) -> list[dict[str, Any]] | str:
    """The flow's per-frame rows (frame, partners, iou, kept, reason) of the sequence ``name`` read from
    ``relpath``, frames with empty ground truth left out as ``score-motion`` leaves them out; or why there are
    none (the command skipped the source, or scored another source of that name)."""
    sequence = scored["sequences"].get(name)
    if sequence is None or sequence.get("source") != relpath:
        return scored["skipped"].get(relpath, "not scored by mtssl-data score-motion")
    return [{k: row[k] for k in FLOW_ROW_KEYS} for row in sequence["frames"] if not row["gt_empty"]]


def sequence_scores(head_iou: list[float], rows: list[dict[str, Any]] | None) -> dict[str, Any]:
    """A sequence's record: the head on every frame, and head and flow masks on the flow's frames and kept ones."""
    out: dict[str, Any] = {"frames": len(head_iou), "head_j": _mean(head_iou)}
    rows = rows if rows is not None else []
    kept = [r for r in rows if r["kept"]]
    out.update(
        flow_frames=len(rows),
        head_j_flow_frames=_mean([head_iou[r["frame"]] for r in rows]),
        flow_j=_mean([r["iou"] for r in rows]),
        kept=len(kept),
        head_j_kept=_mean([head_iou[r["frame"]] for r in kept]),
        flow_j_kept=_mean([r["iou"] for r in kept]),
    )
    out["head_iou"] = head_iou
    out["flow_per_frame"] = rows
    return out


SUMMARY_KEYS = ("head_j", "head_j_flow_frames", "flow_j", "head_j_kept", "flow_j_kept")


def overall(sequences: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Means over sequences (each weighs the same; one without such frames is left out of that mean), counts summed."""
    out: dict[str, Any] = {"sequences": len(sequences)}
    for key in SUMMARY_KEYS:
        out[key] = _mean([s[key] for s in sequences.values() if s[key] is not None])
    for key in COUNT_KEYS:
        out[key] = sum(s[key] for s in sequences.values())
    return out


@dataclass(frozen=True)
class Clip:
    """A sequence to score: its source (as ``score-motion`` names it), its frames and ground truth."""

    relpath: str
    frames: np.ndarray  # (N, H, W, 3) uint8 at the working size
    truth: list[np.ndarray]  # N masks (0/255 uint8) at their own size


def read_clip(videos: Path, gt_dir: Path, source: SequenceSource, size: int) -> Clip:
    """A source's frames and its ground truth; SequenceError when they cannot be scored together."""
    truth = load_ground_truth(gt_dir)
    frames = read_frames(videos, source, size)  # a damaged frame is a SequenceError
    if not frames:
        raise SequenceError("no frames")
    if len(truth) != len(frames):
        raise SequenceError("frame count mismatch", f"{len(frames)} frames, {len(truth)} ground-truth masks")
    if len({f.shape for f in frames}) > 1:
        raise SequenceError("frames of different sizes")
    return Clip(source.relpath, np.stack(frames), truth)


def iter_sequences(videos: Path, masks: Path, size: int) -> Iterator[tuple[str, Clip | str]]:
    """``(name, clip)`` per sequence with ground truth, ``(relpath, reason)`` per skipped source."""
    for source in list_sequences(videos):
        gt_dir = masks / source.name
        if source.kind == "other":
            yield source.relpath, "not a video"
        elif not gt_dir.is_dir() or not any(gt_dir.glob("*.png")):
            yield source.relpath, "no ground truth"
        else:
            try:
                clip = read_clip(videos, gt_dir, source, size)
            except SequenceError as exc:
                yield source.relpath, str(exc)
            else:
                yield source.name, clip


def score_heads(
    videos: Path, masks: Path, size: int, predict: Predict, batch_size: int
) -> tuple[dict[str, tuple[str, list[float]]], list[str], dict[str, str], dict[str, float]]:
    """The head's per-frame J of every sequence with ground truth: ``({name: (relpath, ious)}, names whose
    ground truth is empty on every frame, {relpath: why skipped}, seconds reading and on the head)."""
    heads: dict[str, tuple[str, list[float]]] = {}
    empty: list[str] = []
    skipped: dict[str, str] = {}
    seconds = {"read": 0.0, "head": 0.0}
    clock = time.perf_counter()
    for name, item in iter_sequences(videos, masks, size):
        seconds["read"] += time.perf_counter() - clock
        if isinstance(item, str):
            skipped[name] = item
        elif name in heads or name in empty:
            skipped[item.relpath] = "duplicate sequence name"
        elif not any(np.any(t) for t in item.truth):
            empty.append(name)
        else:
            clock = time.perf_counter()
            heads[name] = (item.relpath, score_frames(predict, item.frames, item.truth, batch_size))
            seconds["head"] += time.perf_counter() - clock
        clock = time.perf_counter()
    seconds["read"] += time.perf_counter() - clock
    return heads, empty, skipped, seconds


def merge_flow(
    heads: dict[str, tuple[str, list[float]]], scored: dict[str, Any] | None, skipped: dict[str, str]
) -> dict[str, dict[str, Any]]:
    """Each sequence's record (:func:`sequence_scores`), with the flow's rows when ``scored`` (``score-motion``'s
    JSON) is given; a sequence the flow has no rows for is added to ``skipped`` with why."""
    sequences: dict[str, dict[str, Any]] = {}
    for name, (relpath, head_iou) in heads.items():
        rows = flow_rows(scored, name, relpath) if scored is not None else None
        if isinstance(rows, str):
            skipped[relpath] = rows
        else:
            sequences[name] = sequence_scores(head_iou, rows)
    return sequences


def evaluate_motion(
    run: Path,
    videos: Path,
    masks: Path,
    size: int | None = None,
    flow: bool = True,
    json_out: Path | None = None,
    device: str = "auto",
    *,
    predict: Predict | None = None,
    batch_size: int = BATCH_SIZE,
    console: Any = None,
) -> dict[str, Any]:
    """Score the run's motion head (or ``predict``, for tests) on ``videos``/``masks``; print, write, return.

    Returns ``{"run", "step", "size", "sequences": {seq: {...}}, "overall": {...}, "empty_sequences",
    "skipped", "flow_config", "seconds"}``; per sequence and overall: ``frames``, ``head_j``, and with
    ``flow`` ``flow_frames``, ``head_j_flow_frames``, ``flow_j``, ``kept``, ``head_j_kept``, ``flow_j_kept``.
    """
    from rich.console import Console

    console = console if console is not None else Console()
    run, videos, masks = Path(run), Path(videos), Path(masks)
    for label, folder in (("videos", videos), ("masks", masks)):
        if not folder.is_dir():
            raise MotionEvalError(f"--{label} {folder} is not a folder")
    if size is not None and size < 16:
        raise MotionEvalError(f"--size must be at least 16, got {size}")
    net, step = load_motion_network(run)
    recipe = motion_recipe(run)
    size = size if size is not None else run_size(recipe)
    if predict is None:
        dev = resolve_device(device)
        net.to_device(dev)
        predict = network_predictor(net, dev)
    heads, empty, skipped, seconds = score_heads(videos, masks, size, predict, batch_size)
    scored = None
    clock = time.perf_counter()
    if flow and heads:
        scored = run_flow(videos, masks, size, recipe)
    seconds["flow"] = time.perf_counter() - clock
    sequences = merge_flow(heads, scored, skipped)
    if not sequences:
        reasons = ", ".join(f"{path}: {why}" for path, why in sorted(skipped.items())[:5]) or "no sources found"
        extra = f"; ground truth empty on every frame: {', '.join(empty)}" if empty else ""
        raise MotionEvalError(f"no frames under {videos} paired with masks in {masks} ({reasons}{extra})")

    results = {
        "run": str(run),
        "step": step,
        "size": size,
        "sequences": sequences,
        "overall": overall(sequences),
        "empty_sequences": sorted(empty),
        "skipped": skipped,
        "flow_config": scored["config"] if scored is not None else None,
        "seconds": {key: round(value, 3) for key, value in seconds.items()},
    }
    print_results(results, console, flow)
    if json_out is not None:
        Path(json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(json_out).write_text(json.dumps(results, indent=1) + "\n")
        console.print(f"wrote {json_out}", markup=False, highlight=False)
    return results
