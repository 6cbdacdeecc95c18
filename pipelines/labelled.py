"""The embedded labelled sample for the probes (``mtssl-eval probe``): real photos that installed packages ship.

Three sets, each laid out as ``<set>/{train,val}/<class>/*.jpg`` for ``--train``/``--val``:

- ``faces``: scikit-image's ``lfw_subset`` (100 faces and 100 non-face background patches of Labeled Faces in
  the Wild, 25x25 grayscale), upscaled to 64x64; a seeded, stratified 50/50 split of distinct images.
- ``photos``: one class per photograph, 7 photographs the pretraining sample (``pipelines/sample.py``) does not
  use; each photo is cut into a checkerboard of regions (``split_regions``) and train crops come only from the
  train cells, val crops only from the val cells, with a gap between, so no val pixel is in any train image.
  Same scenes on both sides: it measures how well the features tell textures and colours apart, not category
  recognition.
- ``digits``: scikit-learn's handwritten digits (UCI optdigits, 8x8, 17 grey levels), upscaled to 64x64; a
  seeded, stratified draw of distinct images per split. The one category set that ships: a class is a digit
  written by many people, not one scene.

Every source is read from its file inside the installed package (never through a loader that may download), and
the output is deterministic: the same seed and package versions give the same bytes.
"""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import io
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
from PIL import Image

from mtssl.contract import write_bytes_atomic

SPLITS = ("train", "val")
FACE_SIDE = 64  # the 25 px patches are upscaled to this side
DIGIT_SIDE = 64  # the 8 px digits are upscaled to this side
DIGITS_PER_SPLIT = 30  # images per digit and split
DIGIT_LEVELS = 16  # optdigits counts ink in 4x4 blocks of 32x32 bitmaps: values 0..16
PHOTO_SIDE = 128  # photo crops are resized to this side (mtssl-eval probe's default --size)
PHOTOS_PER_SPLIT = 24  # crops per photo and split
REGION_GAP = 8  # pixels between a photo's train regions and its val regions
MIN_REGION = 128  # a side is cut in two only where both parts keep at least this length
CROP_SCALE = (0.4, 0.9)  # crop side, as a share of its region's shorter side
MIN_CROP = 64  # no crop is cut smaller than this many source pixels
JPEG_QUALITY = 90


@dataclass(frozen=True)
class Source:
    """A file inside an installed package, and where it comes from (for the README)."""

    package: str  # top-level import name
    relpath: str  # inside the package folder
    credit: str


FACES = Source(
    "skimage",
    "data/lfw_subset.npy",
    "scikit-image `data.lfw_subset()`: 100 faces and 100 non-faces (background patches) cut from Labeled Faces "
    "in the Wild (Huang et al., UMass Amherst, http://vis-www.cs.umass.edu/lfw/), resized to 25x25. LFW's photos "
    "were collected from news sites; the LFW site states no licence for them (copyright stays with the photographers); "
    "scikit-image redistributes this subset in its BSD-3-Clause wheel.",
)

DIGITS = Source(
    "sklearn",
    "datasets/data/digits.csv.gz",
    "scikit-learn `load_digits()`: the test part of UCI's Optical Recognition of Handwritten Digits (Alpaydin & "
    "Kaynak, 1998; https://archive.ics.uci.edu/dataset/80), 1797 digits by 13 writers (about 180 per digit), "
    "each 8x8 with 17 grey levels (ink counts of 4x4 blocks of a 32x32 bitmap); CC BY 4.0.",
)

PHOTOS: dict[str, Source] = {
    "cell": Source(
        "skimage",
        "data/cell.png",
        "scikit-image `data.cell()`: quantitative phase image of a cell in saline (Paul Müller); CC0.",
    ),
    "china": Source(
        "sklearn",
        "datasets/images/china.jpg",
        "scikit-learn `load_sample_images()`: a pagoda by a lake, by danielbuechele on Flickr; CC BY 2.0.",
    ),
    "clock": Source(
        "skimage",
        "data/clock_motion.png",
        "scikit-image `data.clock()`: motion-blurred wall clock; public domain (Stefan van der Walt).",
    ),
    "flower": Source(
        "sklearn",
        "datasets/images/flower.jpg",
        "scikit-learn `load_sample_images()`: an orange dahlia, by vultilion on Flickr; CC BY 2.0.",
    ),
    "hopper": Source(
        "matplotlib",
        "mpl-data/sample_data/grace_hopper.jpg",
        "matplotlib sample data `grace_hopper.jpg`: official U.S. Navy portrait of Grace Hopper; public domain "
        "(work of the U.S. federal government; matplotlib ships it without a licence note).",
    ),
    "page": Source(
        "skimage",
        "data/page.png",
        "scikit-image `data.page()`: scanned page of printed text, unevenly lit; no licence stated beyond "
        "scikit-image's BSD-3-Clause.",
    ),
    "text": Source(
        "skimage",
        "data/text.png",
        "scikit-image `data.text()`: handwritten formulas (Wikipedia File:Corner.png); public domain.",
    ),
}


class Box(NamedTuple):
    """A pixel rectangle, ends exclusive."""

    y0: int
    x0: int
    y1: int
    x1: int

    @property
    def height(self) -> int:
        return self.y1 - self.y0

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    def contains(self, other: Box) -> bool:
        return self.y0 <= other.y0 and self.x0 <= other.x0 and other.y1 <= self.y1 and other.x1 <= self.x1

    def overlaps(self, other: Box) -> bool:
        return self.y0 < other.y1 and other.y0 < self.y1 and self.x0 < other.x1 and other.x0 < self.x1


@dataclass(frozen=True)
class Item:
    """One image of the labelled sample: ``<set>/<split>/<label>/<name>``."""

    set: str
    split: str
    label: str
    name: str
    jpeg: bytes
    box: Box | None = None  # where in its photo the crop was cut (photos set)

    @property
    def relpath(self) -> str:
        return f"{self.set}/{self.split}/{self.label}/{self.name}"


def package_file(source: Source) -> Path:
    """The source's file inside the installed package, found without importing the package."""
    spec = importlib.util.find_spec(source.package)
    if spec is None or spec.origin is None:
        raise FileNotFoundError(f"package {source.package!r} is not installed (needed for {source.relpath})")
    path = Path(spec.origin).parent / source.relpath
    if not path.is_file():
        raise FileNotFoundError(f"{path} is not in the installed {source.package!r} (a wheel without its data?)")
    return path


def read_photo(path: Path) -> np.ndarray:
    """uint8 RGB (H, W, 3), or (H, W) for a grayscale file, as PIL decodes it (the packages' own loaders do too)."""
    with Image.open(path) as image:
        gray = image.mode in ("1", "L", "LA", "I", "I;16")
        return np.asarray(image.convert("L" if gray else "RGB"))


def read_faces(path: Path) -> np.ndarray:
    """``lfw_subset``: (N, 25, 25) uint8; the first half are faces, the rest non-faces."""
    faces = np.load(path, allow_pickle=False)
    return np.round(np.clip(faces, 0, 1) * 255).astype(np.uint8)


def read_digits(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``load_digits``' file: (N, 8, 8) uint8 images (ink white on black, 0..255) and (N,) int labels 0..9."""
    table = np.loadtxt(path, delimiter=",", dtype=np.float64)
    images = np.round(table[:, :64].reshape(-1, 8, 8) / DIGIT_LEVELS * 255).astype(np.uint8)
    return images, table[:, 64].astype(np.int64)


def split_regions(height: int, width: int, gap: int = REGION_GAP, min_side: int = MIN_REGION) -> dict[str, list[Box]]:
    """Disjoint train and val regions of an image, ``gap`` pixels apart, as a checkerboard.

    Each side is cut in two where both parts stay at least ``min_side`` long (else it is kept whole): a 2x2 grid
    gives train the top-left and bottom-right cells and val the other two, so both see the top and the bottom,
    the left and the right of the scene; a 1x2 (or 2x1) grid gives train the first half and val the second.
    """

    def spans(length: int) -> list[tuple[int, int]]:
        if length < 2 * min_side + gap:
            return [(0, length)]
        cut = length // 2 - gap // 2
        return [(0, cut), (cut + gap, length)]

    rows, cols = spans(height), spans(width)
    if len(rows) == len(cols) == 1:
        raise ValueError(f"a {height}x{width} image is too small to split into regions of {min_side} px")
    regions: dict[str, list[Box]] = {split: [] for split in SPLITS}
    for r, (y0, y1) in enumerate(rows):
        for c, (x0, x1) in enumerate(cols):
            regions[SPLITS[(r + c) % 2]].append(Box(y0, x0, y1, x1))
    return regions


def crop_boxes(
    regions: list[Box], count: int, rng: np.random.Generator, scale: tuple[float, float] = CROP_SCALE
) -> list[Box]:
    """``count`` random square crops, the i-th inside ``regions[i % len(regions)]``, its side ``scale`` of the
    region's shorter side (at least ``MIN_CROP`` px)."""
    crops = []
    for i in range(count):
        region = regions[i % len(regions)]
        short = min(region.height, region.width)
        if short < MIN_CROP:
            raise ValueError(f"region {region} is smaller than {MIN_CROP} px")
        side = min(short, max(MIN_CROP, round(rng.uniform(*scale) * short)))
        y = region.y0 + int(rng.integers(0, region.height - side + 1))
        x = region.x0 + int(rng.integers(0, region.width - side + 1))
        crops.append(Box(y, x, y + side, x + side))
    return crops


def encode_jpeg(image: np.ndarray) -> bytes:
    """RGB or grayscale uint8 to JPEG bytes (quality 90, OpenCV, as the pretraining sample)."""
    bgr = image[..., ::-1] if image.ndim == 3 else image
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(bgr), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return buf.tobytes()


def _resize(image: np.ndarray, side: int) -> np.ndarray:
    interp = cv2.INTER_AREA if min(image.shape[:2]) > side else cv2.INTER_CUBIC
    return cv2.resize(np.ascontiguousarray(image), (side, side), interpolation=interp)


def face_items(seed: int = 0) -> list[Item]:
    """The faces set: every patch once, each class split 50/50 by a seeded permutation; names keep the index."""
    faces = read_faces(package_file(FACES))
    half = len(faces) // 2
    items = []
    for class_index, (label, indices) in enumerate((("face", range(half)), ("nonface", range(half, len(faces))))):
        order = np.random.default_rng([seed, 0, class_index]).permutation(np.array(indices))
        cut = len(order) // 2
        for split, chosen in (("train", order[:cut]), ("val", order[cut:])):
            for i in sorted(chosen.tolist()):
                jpeg = encode_jpeg(_resize(faces[i], FACE_SIDE))
                items.append(Item("faces", split, label, f"{label}_{i:03d}.jpg", jpeg))
    return items


def digit_items(seed: int = 0, per_split: int = DIGITS_PER_SPLIT) -> list[Item]:
    """The digits set: ``per_split`` distinct images per digit and split, drawn by a seeded permutation."""
    images, labels = read_digits(package_file(DIGITS))
    items = []
    for digit in range(10):
        order = np.random.default_rng([seed, 2, digit]).permutation(np.flatnonzero(labels == digit))
        if len(order) < 2 * per_split:
            raise ValueError(f"digit {digit} has {len(order)} images, fewer than 2 x {per_split}")
        for split, chosen in (("train", order[:per_split]), ("val", order[per_split : 2 * per_split])):
            for i in sorted(chosen.tolist()):
                jpeg = encode_jpeg(_resize(images[i], DIGIT_SIDE))
                items.append(Item("digits", split, str(digit), f"digit_{i:04d}.jpg", jpeg))
    return items


def photo_plan(shape: tuple[int, ...], per_split: int, rng: np.random.Generator) -> dict[str, list[Box]]:
    """The crops of one photo: ``per_split`` from its train regions, then ``per_split`` from its val regions."""
    regions = split_regions(shape[0], shape[1])
    return {split: crop_boxes(regions[split], per_split, rng) for split in SPLITS}


def photo_items(seed: int = 0, per_split: int = PHOTOS_PER_SPLIT) -> list[Item]:
    """The photos set: ``per_split`` crops per photo and split, train and val from disjoint halves."""
    items = []
    for class_index, (label, source) in enumerate(sorted(PHOTOS.items())):
        photo = read_photo(package_file(source))
        plan = photo_plan(photo.shape, per_split, np.random.default_rng([seed, 1, class_index]))
        for split in SPLITS:
            for i, box in enumerate(plan[split]):
                jpeg = encode_jpeg(_resize(photo[box.y0 : box.y1, box.x0 : box.x1], PHOTO_SIDE))
                items.append(Item("photos", split, label, f"{label}_{i:03d}.jpg", jpeg, box))
    return items


def _readme(items: list[Item], seed: int) -> str:
    def counts(name: str) -> str:
        chosen = [item for item in items if item.set == name]
        labels = sorted({item.label for item in chosen})
        per = {split: sum(item.split == split for item in chosen) for split in SPLITS}
        return f"{len(labels)} classes ({', '.join(labels)}), {per['train']} train and {per['val']} val images"

    photo_credits = "\n".join(f"- `{label}`: {source.credit}" for label, source in sorted(PHOTOS.items()))
    return f"""# Embedded labelled sample

Written by `mtssl-data sample` (seed {seed}) from files that installed packages ship: nothing is downloaded.
Each set is `<set>/train/<class>/*.jpg` and `<set>/val/<class>/*.jpg`; `index.csv` lists every image
(path relative to this folder, label, split). Probe a trunk with, for example,
`mtssl-eval probe --train <this folder>/photos/train --val <this folder>/photos/val ...`.
Regenerate it rather than editing it: the same seed and package versions give the same bytes.

## faces: {counts("faces")}

{FACE_SIDE}x{FACE_SIDE} grayscale JPEGs, upscaled from 25x25. File `face_017.jpg` is `lfw_subset()[17]`; each class is
split 50/50 by a seeded permutation, and no patch is in both splits.

Source: {FACES.credit}

What it shows: whether the features separate real face crops from real background crops. It is easy: about a
fifth of the non-faces are nearly flat, faces never are, and a logistic regression on the raw pixels (16x16)
already scores about 97% on val. Read it as a sanity check of the probe (a trunk far below that is broken), and
always beside the random-trunk baseline row.

## photos: {counts("photos")}

{PHOTO_SIDE}x{PHOTO_SIDE} JPEGs (grayscale photos stay grayscale), each a random square crop (40-90% of its region's
shorter side, never under {MIN_CROP} source pixels) of one photograph; the class is the photograph. Each photo is cut
into a 2x2 checkerboard of regions {REGION_GAP} px apart (train: top-left and bottom-right, val: the other two; a photo
too low or too narrow for that, `page` and `text`, into two halves: train left, val right), and train crops come
only from train regions, val crops only from val regions: no val pixel is in any train image. None of these
photographs is in the unlabelled pretraining sample (`images/`).

{photo_credits}

What it shows: how well frozen features tell apart the textures, colours and structures of 7 scenes, on parts
of each scene the probe was not fit on. What it cannot show: category recognition. A class is one scene, so the
classes are not categories and val shares its scene (lighting, camera, subject) with train; three photos are
colour and four grayscale, so colour alone splits them into two groups. For scale: a logistic regression on the
raw pixels (16x16) scores about 64% on val, 5-nearest neighbours about 40% (chance: 14%). High accuracy here does
not mean a trunk recognises objects; use a real labelled set (e.g. ImageNet) for that.

## digits: {counts("digits")}

{DIGIT_SIDE}x{DIGIT_SIDE} grayscale JPEGs (white ink on black), upscaled from 8x8. File `digit_0017.jpg` is
`load_digits().images[17]`; for each digit a seeded permutation of its images gives the first {DIGITS_PER_SPLIT} to
train and the next {DIGITS_PER_SPLIT} to val, so no image is in both splits (the same writer may be: the file does not
say who wrote what).

Source: {DIGITS.credit}

What it shows: whether the features recognise categories, the same digit drawn by different hands, rather than
one scene's texture; the only category set among what the installed packages ship. What it cannot show: much
about photographs. An 8x8 digit upscaled to 64 px is a few soft blobs, far from the photos a trunk is pretrained
on, and the raw pixels are already a strong feature: a logistic regression on them (8x8) scores about 95% on
val, so read the trunk rows against the random-trunk baseline, not against chance (10%).
"""


def _index(items: list[Item]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["path", "label", "split"])
    for item in sorted(items, key=lambda item: item.relpath):
        writer.writerow([item.relpath, item.label, item.split])
    return buffer.getvalue()


def write_labelled_sample(out: Path, seed: int = 0, per_split: int = PHOTOS_PER_SPLIT) -> list[Path]:
    """Write every set, ``index.csv`` and ``README.md`` under ``out``; returns the written image paths (sorted).

    Earlier ``*.jpg`` files in the sets' class folders that this write does not produce are removed, so the
    folders always hold exactly what ``index.csv`` lists.
    """
    out = Path(out)
    items = face_items(seed) + photo_items(seed, per_split) + digit_items(seed)
    digests: dict[str, str] = {}
    for item in items:
        digest = hashlib.sha256(item.jpeg).hexdigest()
        if digest in digests:
            raise RuntimeError(f"{item.relpath} has the same bytes as {digests[digest]}")
        digests[digest] = item.relpath
    wanted = {out / item.relpath for item in items}
    for name in sorted({item.set for item in items}):
        for stale in sorted((out / name).glob("*/*/*.jpg")):
            if stale not in wanted:
                stale.unlink()
    for item in items:
        path = out / item.relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(path, item.jpeg)
    write_bytes_atomic(out / "index.csv", _index(items).encode())
    write_bytes_atomic(out / "README.md", _readme(items, seed).encode())
    return sorted(wanted)
