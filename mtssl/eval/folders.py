"""Labelled image folders for the probes: listing, a seeded split, decoding to fixed-size uint8 RGB.

A labelled folder holds one sub-folder per class (``DIR/<class>/*.jpg``), as ImageNet's train tree and
``torchvision.datasets.ImageFolder`` lay it out. Every file under a class folder is read or skipped with its
reason (``Labelled.skipped``), never silently dropped: hidden files, other types than ``IMAGE_SUFFIXES``,
anything but a regular file, files that do not decode. A class folder without an image is refused.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")  # .gif: its first frame

HIDDEN = "hidden (its name starts with '.')"
NOT_REGULAR = "not a regular file"
NOT_IMAGE_TYPE = f"not an image type the probe reads (reads: {', '.join(IMAGE_SUFFIXES)})"
NOT_DECODABLE = "not a decodable image"
NOT_IN_CLASS = "not in a class folder"
NOT_A_CLASS = "a class folder the train folder does not have"
LINKED_FOLDER = "a linked folder (not followed)"


class SkippedFile(Exception):
    """A file the probe does not read; the message is the reason."""


@dataclass(frozen=True)
class Labelled:
    """Image files with integer labels; ``classes[label]`` is the class folder's name."""

    paths: tuple[Path, ...]
    labels: tuple[int, ...]
    classes: tuple[str, ...]
    skipped: dict[str, str] = field(default_factory=dict)  # path -> reason, filled when decoding

    def __len__(self) -> int:
        return len(self.paths)


def list_labelled(root: Path, classes: tuple[str, ...] | None = None) -> Labelled:
    """Every image under ``root/<class>/`` (sorted); ``classes`` fixes the label order (e.g. the train split's).

    Every other entry is in ``skipped`` with its reason. A class folder that is missing or holds no image the
    probe reads is refused (FileNotFoundError naming it): it would still count as a class of the probe.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"no labelled folder at {root} (expected one sub-folder of images per class)")
    found, skipped = class_folders(root, classes)
    classes = classes or found
    if len(classes) < 2:
        raise FileNotFoundError(f"{root} has {len(classes)} class folder(s); a probe needs at least 2")
    paths, labels = [], []
    for label, name in enumerate(classes):
        files, skips = class_images(root / name)
        paths += files
        labels += [label] * len(files)
        skipped |= skips
    return Labelled(tuple(paths), tuple(labels), tuple(classes), skipped)


def class_folders(root: Path, classes: tuple[str, ...] | None) -> tuple[tuple[str, ...], dict[str, str]]:
    """The names of the class folders under ``root`` (sorted), and its other entries with their reasons."""
    found, skipped = [], {}
    for entry in sorted(root.iterdir()):
        if entry.name.startswith("."):
            skipped[str(entry)] = HIDDEN
        elif not entry.is_dir():
            skipped[str(entry)] = NOT_IN_CLASS
        elif classes is not None and entry.name not in classes:
            skipped[str(entry)] = NOT_A_CLASS
        else:
            found.append(entry.name)
    return tuple(found), skipped


def class_images(folder: Path) -> tuple[list[Path], dict[str, str]]:
    """``class_files`` of a class folder; FileNotFoundError (one line, naming it) when it has no image to read."""
    if not folder.is_dir():
        raise FileNotFoundError(f"no class folder {folder}: every class of the train folder needs one")
    files, skipped = class_files(folder)
    if not files:
        raise FileNotFoundError(no_image_message(folder, skipped))
    return files, skipped


def no_image_message(folder: Path, skipped: dict[str, str]) -> str:
    """The refusal of a class folder without an image the probe reads, with the first skipped file's reason."""
    if not skipped:
        return f"class folder {folder} is empty: every class needs images"
    example, reason = next(iter(skipped.items()))
    count = f"{len(skipped)} file{'s' if len(skipped) > 1 else ''}"
    return f"class folder {folder} has no image the probe reads: {count} skipped, e.g. {Path(example).name}: {reason}"


def class_files(folder: Path) -> tuple[list[Path], dict[str, str]]:
    """The files under a class folder that the probe reads (sorted, sub-folders too), and every other one with
    its reason. Hidden and linked sub-folders are skipped whole (a link could lead back up the tree)."""
    files, skipped = [], {}

    def unreadable_folder(exc: OSError) -> None:
        skipped[str(exc.filename)] = unreadable(exc)

    for top, dirs, names in os.walk(folder, onerror=unreadable_folder):
        for name in sorted(dirs):
            path = Path(top) / name
            if name.startswith(".") or path.is_symlink():
                skipped[str(path)] = HIDDEN if name.startswith(".") else LINKED_FOLDER
        dirs[:] = sorted(name for name in dirs if str(Path(top) / name) not in skipped)
        for name in sorted(names):
            path = Path(top) / name
            reason = skip_reason(path)
            if reason is None:
                files.append(path)
            else:
                skipped[str(path)] = reason
    return sorted(files), skipped


def skip_reason(path: Path) -> str | None:
    """Why the probe does not read this file, or None when it does.

    Only ``os.stat`` looks at the file: a FIFO or a device is never opened (opening a FIFO blocks until
    something writes to it, so a FIFO in a labelled folder would hang the probe).
    """
    if path.name.startswith("."):
        return HIDDEN
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        return unreadable(exc)
    if not stat.S_ISREG(mode):
        return NOT_REGULAR
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        return NOT_IMAGE_TYPE
    return None


def unreadable(exc: OSError) -> str:
    return f"unreadable ({exc.strerror or exc})"


def split_labelled(data: Labelled, train_share: float, seed: int) -> tuple[Labelled, Labelled]:
    """A stratified, seeded split: ``train_share`` of every class for training, the rest for validation."""
    rng = np.random.default_rng(seed)
    labels = np.array(data.labels)
    train_idx, val_idx = [], []
    for label in range(len(data.classes)):
        members = rng.permutation(np.flatnonzero(labels == label))
        cut = int(round(len(members) * train_share))
        cut = min(max(cut, 1), len(members) - 1) if len(members) > 1 else len(members)
        train_idx += members[:cut].tolist()
        val_idx += members[cut:].tolist()

    def take(index: list[int]) -> Labelled:
        index = sorted(index)
        paths, labels = tuple(data.paths[i] for i in index), tuple(data.labels[i] for i in index)
        return Labelled(paths, labels, data.classes, data.skipped)  # both parts report the listing's skips

    return take(train_idx), take(val_idx)


def decode(path: Path, flags: int = cv2.IMREAD_COLOR) -> np.ndarray:
    """The decoded image (BGR, a GIF's first frame); SkippedFile, with the reason, when it cannot be read."""
    try:
        raw = np.frombuffer(Path(path).read_bytes(), np.uint8)
    except OSError as exc:
        raise SkippedFile(unreadable(exc)) from exc
    image = cv2.imdecode(raw, flags) if raw.size else None
    if image is None and Path(path).suffix.lower() == ".gif":
        image = gif_first_frame(raw)
    if image is None:
        raise SkippedFile(NOT_DECODABLE)
    return image


def gif_first_frame(raw: np.ndarray) -> np.ndarray | None:
    """A GIF's first frame (BGR) read by Pillow, for OpenCV builds without a GIF decoder (it came with 4.11)."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(raw.tobytes())) as image:
            rgb = np.asarray(image.convert("RGB"))
    except (OSError, ValueError, Image.DecompressionBombError):
        return None
    return np.ascontiguousarray(rgb[..., ::-1])


def square(image: np.ndarray, size: int) -> np.ndarray:
    """BGR to RGB, the shorter side resized to ``size`` (area averaging down), a centre-cropped square."""
    height, width = image.shape[:2]
    scale = size / min(height, width)
    new = (max(size, round(width * scale)), max(size, round(height * scale)))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    image = cv2.resize(image, new, interpolation=interp)
    y, x = (image.shape[0] - size) // 2, (image.shape[1] - size) // 2
    return np.ascontiguousarray(image[y : y + size, x : x + size, ::-1])


def load_square(path: Path, size: int) -> np.ndarray | None:
    """Decode to RGB, resize the shorter side to ``size`` (area averaging down), centre-crop a square."""
    try:
        return square(decode(path), size)
    except SkippedFile:
        return None


def typical_side(data: Labelled, most: int = 32) -> int | None:
    """The median shorter side of up to ``most`` images spread over the set; None when none of them decode."""
    step = max(1, len(data) // most)
    sides = []
    for path in data.paths[::step][:most]:
        try:
            sides.append(min(decode(path, cv2.IMREAD_UNCHANGED).shape[:2]))
        except SkippedFile:
            continue
    return int(np.median(sides)) if sides else None


def load_images(data: Labelled, size: int) -> tuple[np.ndarray, np.ndarray, Labelled]:
    """(N, size, size, 3) uint8 RGB, (N,) labels, and the set without the files that failed to decode."""
    images, labels, paths, skipped = [], [], [], {}
    for path, label in zip(data.paths, data.labels, strict=True):
        try:
            images.append(square(decode(path), size))
        except SkippedFile as skip:
            skipped[str(path)] = str(skip)
            continue
        labels.append(label)
        paths.append(path)
    if not images:
        raise FileNotFoundError(f"none of the {len(data)} files decoded as an image")
    kept = Labelled(tuple(paths), tuple(labels), data.classes, {**data.skipped, **skipped})
    return np.stack(images), np.array(labels, dtype=np.int64), kept


def data_hash(*sets: Labelled) -> str:
    """A content hash of the images (bytes) and labels of the given sets, for the feature cache key."""
    digest = hashlib.sha256()
    for data in sets:
        digest.update(b"|set|" + "\0".join(data.classes).encode())
        for path, label in zip(data.paths, data.labels, strict=True):
            digest.update(f"{label}:".encode() + hashlib.md5(Path(path).read_bytes()).digest())
    return digest.hexdigest()
