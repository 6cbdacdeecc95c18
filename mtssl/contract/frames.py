"""Motion-segmentation sequences with ground truth, as both halves read them, and J (their IoU).

The producer's ``mtssl-data score-motion`` scores its flow masks on them and the consumer's ``mtssl-eval
motion`` scores the trained head on them, so the two must pair and score the same frames against the same
masks. Both use the frame order, the file kinds, the ground-truth reader and J from here.

A sequence is a folder of 2+ numbered frames (``<seq>/00000.jpg``, as in DAVIS and FBMS) or a video file
(``<seq>.mp4``) anywhere under the videos folder; its ground truth is ``<masks>/<seq>/*.png``. Frame ``i``
goes with the ``i``-th mask in numeric order (:func:`frame_order`), and any nonzero label is foreground
(DAVIS-2017 object ids included). Frames are read at a working size (shorter side ``size``).

The listing and the frame reader here are the consumer's (:func:`list_sequences`, :func:`read_frames`); the
producer lists and decodes with its own (``pipelines/videos.py``: PyAV, damaged-frame tracking) by the same
rules. The pixels are the same for a folder of 8-bit frames (both decode with Pillow and resize alike) and for
an intact H.264 video (OpenCV's FFmpeg decode here); ``tests/mtssl/eval/test_motion_eval.py`` compares both
readers. A frame file that cannot be decoded is a damaged frame here as there, and its sequence is not scored.
"""

from __future__ import annotations

import io
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import cv2
import numpy as np

from mtssl.contract.locations import NotRegularFile, read_local

VIDEO_EXTENSIONS = {".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v"}
FRAME_EXTENSIONS = {".jpg", ".jpeg", ".png"}
_DIGITS = re.compile(r"(\d+)")
ORIENTATION = 0x0112  # the EXIF tag of the camera's orientation


class SequenceError(Exception):
    """A sequence that cannot be scored: ``reason`` is a short category, ``detail`` says more (printed as the
    producer prints its rejects: ``reason: detail``)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class SequenceSource:
    """A video file, a folder of frames (``frames`` lists its files in order), or another file."""

    relpath: str
    kind: str  # "file", "frames" or "other"
    frames: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        """The sequence's name, which its ground-truth folder bears: the folder's, or the file's stem."""
        path = PurePosixPath(self.relpath)
        return path.name if self.kind == "frames" else path.stem


def frame_order(name: str) -> tuple:
    """Numeric order of frame files: '00010.jpg' after '00009.jpg', 'frame2' before 'frame10'."""
    return tuple(int(part) if part.isdigit() else part for part in _DIGITS.split(PurePosixPath(name).stem))


def iou(pred: np.ndarray, gt: np.ndarray) -> float:
    """Intersection over union of two masks (nonzero = foreground): DAVIS's J of one frame. Two empty masks
    score 1.0 (nothing to find and nothing found is a perfect answer, as in DAVIS); one empty and one not 0.0."""
    pred, gt = np.asarray(pred) > 0, np.asarray(gt) > 0
    union = np.count_nonzero(pred | gt)
    return 1.0 if union == 0 else float(np.count_nonzero(pred & gt) / union)


def resize_short_side(image: np.ndarray, side: int) -> np.ndarray:
    """Scale so the shorter side is ``side`` (the longer one never below it); a no-op when already so. Area
    averaging below half size, bilinear above: as the producer resizes (``pipelines/resize.py``)."""
    height, width = image.shape[:2]
    scale = side / min(height, width)
    if scale == 1:
        return image
    new_w, new_h = max(side, round(width * scale)), max(side, round(height * scale))
    interpolation = cv2.INTER_AREA if min(new_w / width, new_h / height) < 0.5 else cv2.INTER_LINEAR
    return cv2.resize(image, (new_w, new_h), interpolation=interpolation)


def walk_tree(root: Path) -> list[str]:
    """Relative posix paths of the files under ``root`` outside hidden folders, sorted; safe against symlink loops."""
    found: list[str] = []
    visited: set[tuple[int, int]] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        st = os.stat(dirpath)
        if (st.st_dev, st.st_ino) in visited:
            dirnames.clear()
            continue
        visited.add((st.st_dev, st.st_ino))
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        rel = Path(dirpath).relative_to(root)
        found.extend((rel / name).as_posix() for name in filenames)
    return sorted(found)


def _odd_name(relpath: str) -> bool:
    """A hidden file, or a name that is not UTF-8: never part of a sequence (the producer rejects it by name)."""
    try:
        relpath.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return relpath.rsplit("/", 1)[-1].startswith(".")


def list_sequences(root: Path) -> list[SequenceSource]:
    """Video files, frame folders (2+ numbered images in one folder) and any other file, sorted by path."""
    by_folder: dict[str, list[str]] = {}
    sources: list[SequenceSource] = []
    for relpath in walk_tree(Path(root)):
        suffix = PurePosixPath(relpath).suffix.lower()
        if _odd_name(relpath):
            sources.append(SequenceSource(relpath, "other"))
        elif suffix in VIDEO_EXTENSIONS:
            sources.append(SequenceSource(relpath, "file"))
        elif suffix in FRAME_EXTENSIONS and _DIGITS.search(PurePosixPath(relpath).stem):
            by_folder.setdefault(str(PurePosixPath(relpath).parent), []).append(relpath)
        else:
            sources.append(SequenceSource(relpath, "other"))
    for folder, files in by_folder.items():
        if len(files) >= 2:
            sources.append(SequenceSource(folder, "frames", tuple(sorted(files, key=frame_order))))
        else:
            sources.extend(SequenceSource(f, "other") for f in files)
    return sorted(sources, key=lambda s: s.relpath)


def load_ground_truth(folder: Path, shape: tuple[int, int] | None = None) -> list[np.ndarray]:
    """The folder's PNG masks in numeric order as 0/255 uint8, resized (nearest) to ``shape`` (height, width),
    by default the first mask's own size. SequenceError when a mask cannot be read."""
    masks = []
    for path in sorted(Path(folder).glob("*.png"), key=lambda p: frame_order(p.name)):
        try:
            label = cv2.imdecode(np.frombuffer(read_local(path)[0], np.uint8), cv2.IMREAD_UNCHANGED)
        except OSError as exc:
            raise SequenceError("unreadable", f"ground truth {path.name}: {exc}") from exc
        if label is None:
            raise SequenceError("corrupt image", f"ground truth {path.name}")
        label = label.max(axis=2) if label.ndim == 3 else label
        shape = shape or label.shape[:2]
        resized = cv2.resize(label, (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST)
        masks.append(np.where(resized > 0, 255, 0).astype(np.uint8))
    return masks


def read_frames(root: Path, source: SequenceSource, size: int) -> list[np.ndarray]:
    """Every frame of a sequence, RGB uint8 at the working size (shorter side ``size``), in order.

    SequenceError ``damaged frame`` when a frame file cannot be decoded, ``frame size changes`` when a frame
    folder's frames differ in size (frames are scored pixel by pixel against one size of masks)."""
    if source.kind == "frames":
        return _folder_frames(Path(root), source.frames, size)
    if source.kind == "file":
        return _video_frames(Path(root) / source.relpath, size)
    raise SequenceError("not a video", PurePosixPath(source.relpath).suffix or "no extension")


def _folder_frames(root: Path, names: tuple[str, ...], size: int) -> list[np.ndarray]:
    frames: list[np.ndarray] = []
    first: tuple[int, ...] = ()  # the first frame's upright shape
    for index, name in enumerate(names):
        file = PurePosixPath(name).name
        try:
            rgb = decode_rgb(read_local(root / name)[0])
        except NotRegularFile as exc:
            raise SequenceError("not a regular file", file) from exc
        except (OSError, ValueError) as exc:
            raise SequenceError("damaged frame", f"frame {index}: frame file {file} unusable ({exc})") from exc
        first = first or rgb.shape
        if rgb.shape != first:
            detail = f"{file} is {rgb.shape[1]}x{rgb.shape[0]}, the first frame is {first[1]}x{first[0]}"
            raise SequenceError("frame size changes", detail)
        frames.append(resize_short_side(rgb, size))
    return frames


def decode_rgb(data: bytes) -> np.ndarray:
    """An image file's bytes as upright 8-bit RGB (H, W, 3), as the producer reads a frame: Pillow, the EXIF
    orientation applied, transparency composited onto white. ValueError when it is empty, truncated or no image."""
    from PIL import Image, ImageOps

    if not data:
        raise ValueError("empty file")
    try:
        with Image.open(io.BytesIO(data)) as opened:
            opened.load()
            image = ImageOps.exif_transpose(opened) if opened.getexif().get(ORIENTATION, 1) != 1 else opened
            if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
                rgba = image.convert("RGBA")
                image = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
            return np.ascontiguousarray(np.asarray(image.convert("RGB"), dtype=np.uint8))
    except (OSError, SyntaxError, EOFError, Image.DecompressionBombError) as exc:
        raise ValueError(str(exc)[:200] or type(exc).__name__) from exc


def _video_frames(path: Path, size: int) -> list[np.ndarray]:
    """A video file's frames through OpenCV (only a regular file is opened: a FIFO would block the decoder)."""
    try:
        regular = stat.S_ISREG(os.stat(path).st_mode)
    except OSError as exc:
        raise SequenceError("unreadable", str(exc)) from exc
    if not regular:
        raise SequenceError("not a regular file", path.name)
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise SequenceError("corrupt video", f"{path.name}: OpenCV cannot open it")
        frames = []
        while True:
            ok, bgr = capture.read()
            if not ok:
                return frames
            frames.append(resize_short_side(np.ascontiguousarray(bgr[..., ::-1]), size))
    finally:
        capture.release()
