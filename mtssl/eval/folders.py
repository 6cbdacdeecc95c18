"""Labelled image folders for the probes: listing, a seeded split, decoding to fixed-size uint8 RGB.

A labelled folder holds one sub-folder per class (``DIR/<class>/*.jpg``), as ImageNet's train tree and
``torchvision.datasets.ImageFolder`` lay it out. Files that do not decode are skipped and counted, never
silently dropped.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


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
    """Every image under ``root/<class>/`` (sorted); ``classes`` fixes the label order (e.g. the train split's)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"no labelled folder at {root} (expected one sub-folder of images per class)")
    found = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    classes = classes or tuple(found)
    if len(classes) < 2:
        raise FileNotFoundError(f"{root} has {len(classes)} class folder(s); a probe needs at least 2")
    paths, labels = [], []
    for label, name in enumerate(classes):
        folder = root / name
        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        paths += files
        labels += [label] * len(files)
    return Labelled(tuple(paths), tuple(labels), tuple(classes))


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
        return Labelled(tuple(data.paths[i] for i in index), tuple(data.labels[i] for i in index), data.classes)

    return take(train_idx), take(val_idx)


def load_square(path: Path, size: int) -> np.ndarray | None:
    """Decode to RGB, resize the shorter side to ``size`` (area averaging down), centre-crop a square."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        return None
    height, width = image.shape[:2]
    scale = size / min(height, width)
    new = (max(size, round(width * scale)), max(size, round(height * scale)))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    image = cv2.resize(image, new, interpolation=interp)
    y, x = (image.shape[0] - size) // 2, (image.shape[1] - size) // 2
    return np.ascontiguousarray(image[y : y + size, x : x + size, ::-1])


def typical_side(data: Labelled, most: int = 32) -> int | None:
    """The median shorter side of up to ``most`` images spread over the set; None when none of them decode."""
    step = max(1, len(data) // most)
    sides = []
    for path in data.paths[::step][:most]:
        image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if image is not None:
            sides.append(min(image.shape[:2]))
    return int(np.median(sides)) if sides else None


def load_images(data: Labelled, size: int) -> tuple[np.ndarray, np.ndarray, Labelled]:
    """(N, size, size, 3) uint8 RGB, (N,) labels, and the set without the files that failed to decode."""
    images, labels, paths, skipped = [], [], [], {}
    for path, label in zip(data.paths, data.labels, strict=True):
        image = load_square(path, size)
        if image is None:
            skipped[str(path)] = "not a decodable image"
            continue
        images.append(image)
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
