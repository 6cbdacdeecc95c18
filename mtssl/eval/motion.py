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

Pairing, decoding and the flow scoring are the producer's (``pipelines.videos``, ``pipelines.motion``),
imported lazily inside the functions here: they install with mtssl (one package, two halves) and need
neither ray nor torch, but the consumer otherwise never imports ``pipelines``. Sequences pair as
``score-motion`` pairs them: a frame folder ``<videos>/.../<seq>/`` (or a video file ``<seq>.mp4``) with
``<masks>/<seq>/*.png``, frame ``i`` with the ``i``-th mask in numeric order (counts must agree).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

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


def mask_config(recipe: dict[str, Any] | None) -> Any:
    """The recipe's flow-mask settings (a ``pipelines.motion.masks.MaskConfig``), else the defaults."""
    from pipelines.motion.config import MaskConfig

    saved = (recipe or {}).get("mask")
    if not isinstance(saved, dict):
        return MaskConfig()
    known = {f.name for f in fields(MaskConfig)}
    try:
        return MaskConfig(**{key: value for key, value in saved.items() if key in known})
    except (TypeError, ValueError):
        return MaskConfig()


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
    from pipelines.motion.score import iou

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


def flow_rows(frames: np.ndarray, truth: list[np.ndarray], cfg: Any, dis: Any) -> list[dict[str, Any]]:
    """``score-motion``'s per-frame rows (frame, partners, iou, kept, reason) at the working size, frames
    with empty ground truth left out as there."""
    import cv2

    from pipelines.motion.score import score_sequence

    h, w = frames.shape[1:3]
    small = [cv2.resize(t, (w, h), interpolation=cv2.INTER_NEAREST) for t in truth]
    rows = score_sequence(list(frames), small, cfg, dis)["frames"]
    keys = ("frame", "partners", "iou", "kept", "reason")
    return [{k: r[k] for k in keys} for r in rows if not r["gt_empty"]]  # as score-motion: no empty truth


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


def iter_sequences(videos: Path, masks: Path, size: int) -> Iterator[tuple[str, Any]]:
    """``(name, (frames, truth))`` per sequence with ground truth, ``(relpath, reason)`` per skipped source.

    ``frames``: (N, H, W, 3) uint8 at the working size; ``truth``: N masks (0/255 uint8) at their own size.
    """
    import cv2

    from pipelines.errors import Reject
    from pipelines.motion.evaluate import load_ground_truth, sequence_name
    from pipelines.videos import OPEN_END, iter_frames, list_video_tree

    for source in list_video_tree(videos):
        name = sequence_name(source)
        gt_dir = masks / name
        if source.kind == "other":
            yield source.relpath, "not a video"
            continue
        first = next(iter(sorted(gt_dir.glob("*.png"))), None) if gt_dir.is_dir() else None
        if first is None:
            yield source.relpath, "no ground truth"
            continue
        try:
            label = cv2.imread(str(first), cv2.IMREAD_UNCHANGED)
            if label is None:
                raise Reject("corrupt image", f"ground truth {first.name}")
            decoded = list(iter_frames(videos, source, 0, OPEN_END, size))
            damaged = next((f for f in decoded if f.damage), None)  # scored frames must be the real ones
            if damaged is not None:
                raise Reject("damaged frame", f"frame {damaged.index}: {damaged.damage}")
            frames = [f.rgb for f in decoded]
            if not frames:
                raise Reject("no frames")
            truth = load_ground_truth(gt_dir, label.shape[:2])
            if len(truth) != len(frames):
                raise Reject("frame count mismatch", f"{len(frames)} frames, {len(truth)} ground-truth masks")
            if len({f.shape for f in frames}) > 1:
                raise Reject("frames of different sizes")
        except Reject as exc:
            yield source.relpath, str(exc)
            continue
        yield name, (np.stack(frames), truth)


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
    cfg = dis = None
    if flow:
        from pipelines.motion.camera import make_flow

        cfg = mask_config(recipe)
        dis = make_flow(cfg)

    sequences: dict[str, dict[str, Any]] = {}
    empty: list[str] = []
    skipped: dict[str, str] = {}
    seconds = {"read": 0.0, "head": 0.0, "flow": 0.0}
    clock = time.perf_counter()
    for name, item in iter_sequences(videos, masks, size):
        seconds["read"] += time.perf_counter() - clock
        if isinstance(item, str):
            skipped[name] = item
        elif name in sequences or name in empty:
            skipped[name] = "duplicate sequence name"
        elif not any(np.any(t) for t in item[1]):
            empty.append(name)
        else:
            frames, truth = item
            clock = time.perf_counter()
            head_iou = score_frames(predict, frames, truth, batch_size)
            seconds["head"] += time.perf_counter() - clock
            clock = time.perf_counter()
            rows = flow_rows(frames, truth, cfg, dis) if flow else None
            seconds["flow"] += time.perf_counter() - clock
            sequences[name] = sequence_scores(head_iou, rows)
        clock = time.perf_counter()
    seconds["read"] += time.perf_counter() - clock
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
        "flow_config": asdict(cfg) if cfg is not None else None,
        "seconds": {key: round(value, 3) for key, value in seconds.items()},
    }
    print_results(results, console, flow)
    if json_out is not None:
        Path(json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(json_out).write_text(json.dumps(results, indent=1) + "\n")
    return results
