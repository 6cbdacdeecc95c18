"""The embedded labelled sample: layout, counts, disjoint splits, determinism, decodability, offline sources."""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import socket
from pathlib import Path

import cv2
import numpy as np
import pytest

from pipelines.labelled import (
    DIGITS,
    DIGITS_PER_SPLIT,
    FACES,
    MIN_CROP,
    PHOTOS,
    PHOTOS_PER_SPLIT,
    REGION_GAP,
    Box,
    crop_boxes,
    digit_items,
    package_file,
    photo_items,
    read_digits,
    read_faces,
    read_photo,
    split_regions,
    write_labelled_sample,
)

PHOTO_CLASSES = sorted(PHOTOS)


@pytest.fixture(scope="module")
def labelled(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("labelled")
    write_labelled_sample(root, seed=0)
    return root


def files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def class_counts(folder: Path) -> dict[str, int]:
    return {p.name: len(list(p.glob("*.jpg"))) for p in sorted(folder.iterdir()) if p.is_dir()}


def test_folders_hold_the_expected_classes_and_counts(labelled):
    for split in ("train", "val"):
        assert class_counts(labelled / "faces" / split) == {"face": 50, "nonface": 50}
        assert class_counts(labelled / "photos" / split) == dict.fromkeys(PHOTO_CLASSES, PHOTOS_PER_SPLIT)
        assert class_counts(labelled / "digits" / split) == dict.fromkeys(map(str, range(10)), DIGITS_PER_SPLIT)
    assert (labelled / "README.md").is_file()
    readme = (labelled / "README.md").read_text()
    assert all(name in readme for name in PHOTO_CLASSES) and "licence" in readme


def test_index_lists_exactly_the_images(labelled):
    with open(labelled / "index.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["path", "label", "split"]
    on_disk = sorted(p.relative_to(labelled).as_posix() for p in labelled.rglob("*.jpg"))
    assert (
        sorted(row["path"] for row in rows) == on_disk
        and len(on_disk) == 200 + 2 * 7 * PHOTOS_PER_SPLIT + 2 * 10 * DIGITS_PER_SPLIT
    )
    for row in rows:
        _, split, label, _ = row["path"].split("/")
        assert (row["split"], row["label"]) == (split, label)


def test_every_jpeg_decodes_at_its_size(labelled):
    for path in labelled.rglob("*.jpg"):
        image = cv2.imdecode(np.frombuffer(path.read_bytes(), np.uint8), cv2.IMREAD_UNCHANGED)
        assert image is not None, path
        side = 128 if path.parts[-4] == "photos" else 64
        assert image.shape[:2] == (side, side), path
    assert cv2.imread(str(next((labelled / "faces").rglob("*.jpg"))), cv2.IMREAD_UNCHANGED).ndim == 2
    assert (
        cv2.imread(str(next((labelled / "photos" / "train" / "china").glob("*.jpg"))), cv2.IMREAD_UNCHANGED).ndim == 3
    )


def test_train_and_val_share_no_image(labelled):
    digests = {}
    for split in ("train", "val"):
        paths = [*labelled.glob(f"*/{split}/*/*.jpg")]
        digests[split] = {hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}
        assert len(digests[split]) == len(paths)  # no duplicate inside a split either
    assert not digests["train"] & digests["val"]


def test_faces_split_each_patch_once(labelled):
    index = {
        split: {int(p.stem.split("_")[1]) for p in labelled.glob(f"faces/{split}/*/*.jpg")}
        for split in ("train", "val")
    }
    assert not index["train"] & index["val"] and index["train"] | index["val"] == set(range(200))
    assert all(i < 100 for i in (int(p.stem[-3:]) for p in labelled.glob("faces/*/face/*.jpg")))


def test_two_writes_give_identical_bytes_without_network(labelled, tmp_path, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("the labelled sample must not touch the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    write_labelled_sample(tmp_path, seed=0)
    assert files(tmp_path) == files(labelled)


def test_a_rewrite_removes_images_it_no_longer_makes(tmp_path):
    write_labelled_sample(tmp_path, per_split=3)
    write_labelled_sample(tmp_path, per_split=2)
    assert class_counts(tmp_path / "photos" / "val") == dict.fromkeys(PHOTO_CLASSES, 2)
    assert len((tmp_path / "index.csv").read_text().splitlines()) == 1 + 200 + 2 * 7 * 2 + 2 * 10 * DIGITS_PER_SPLIT


@pytest.mark.parametrize(
    "shape", [(191, 384), (172, 448), (448, 172), (300, 400), (660, 550), (427, 640), (600, 512), (260, 2000)]
)
def test_split_regions_are_disjoint_gapped_and_inside(shape):
    height, width = shape
    regions = split_regions(height, width)
    image = Box(0, 0, height, width)
    assert regions["train"] and regions["val"]
    for train in regions["train"]:
        for val in regions["val"]:
            grown = Box(
                train.y0 - REGION_GAP + 1,
                train.x0 - REGION_GAP + 1,
                train.y1 + REGION_GAP - 1,
                train.x1 + REGION_GAP - 1,
            )
            assert not grown.overlaps(val), (train, val)
    for box in regions["train"] + regions["val"]:
        assert image.contains(box) and min(box.height, box.width) >= MIN_CROP
    if len(regions["train"]) == 2:  # a 2x2 checkerboard: each split has a cell in both rows and both columns
        assert all(
            len({box.y0 for box in regions[split]}) == len({box.x0 for box in regions[split]}) == 2 for split in regions
        )
    else:  # two halves across the longer side: train first, val second
        (train,), (val,) = regions["train"], regions["val"]
        assert (train.y0, train.x0) == (0, 0) and (val.y1, val.x1) == (height, width)


def test_split_regions_refuses_an_image_too_small():
    with pytest.raises(ValueError):
        split_regions(100, 200)


def test_crop_boxes_stay_inside_their_regions():
    regions = split_regions(427, 640)["val"]
    crops = crop_boxes(regions, 50, np.random.default_rng(3))
    for i, box in enumerate(crops):
        assert regions[i % len(regions)].contains(box) and box.height == box.width >= MIN_CROP


def test_photo_crops_come_from_their_split_regions():
    items = photo_items(seed=0, per_split=PHOTOS_PER_SPLIT)
    for label in PHOTO_CLASSES:
        photo = read_photo(package_file(PHOTOS[label]))
        regions = split_regions(*photo.shape[:2])
        mine = {split: [item.box for item in items if item.label == label and item.split == split] for split in regions}
        for split, boxes in mine.items():
            assert len(boxes) == PHOTOS_PER_SPLIT
            assert all(any(region.contains(box) for region in regions[split]) for box in boxes)
        assert not any(t.overlaps(v) for t in mine["train"] for v in mine["val"])


def test_sources_are_files_inside_the_installed_packages():
    for source in (FACES, DIGITS, *PHOTOS.values()):
        package_dir = Path(importlib.util.find_spec(source.package).origin).parent
        path = package_file(source)
        assert path.is_file() and path.resolve().is_relative_to(package_dir.resolve())


def test_sources_read_as_the_packages_own_loaders_read_them():
    from matplotlib import cbook
    from skimage import data
    from sklearn.datasets import load_digits, load_sample_images

    assert np.array_equal(read_faces(package_file(FACES)), np.round(data.lfw_subset() * 255).astype(np.uint8))
    for name, loader in (("cell", data.cell), ("clock", data.clock), ("page", data.page), ("text", data.text)):
        assert np.array_equal(read_photo(package_file(PHOTOS[name])), loader()), name
    china, flower = load_sample_images().images
    assert np.array_equal(read_photo(package_file(PHOTOS["china"])), china)
    assert np.array_equal(read_photo(package_file(PHOTOS["flower"])), flower)
    images, labels = read_digits(package_file(DIGITS))
    digits = load_digits()
    assert np.array_equal(labels, digits.target)
    assert np.array_equal(images, np.round(digits.images / 16 * 255).astype(np.uint8))
    assert package_file(PHOTOS["hopper"]) == Path(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))


def test_no_labelled_photo_is_a_pretraining_photo():
    from pipelines.sample import _photos

    pretraining = {hashlib.sha256(np.ascontiguousarray(load()).tobytes()).hexdigest() for load in _photos().values()}
    for name, source in PHOTOS.items():
        assert hashlib.sha256(read_photo(package_file(source)).tobytes()).hexdigest() not in pretraining, name


def test_digits_are_distinct_images_of_their_digit_in_one_split_only():
    images, labels = read_digits(package_file(DIGITS))
    items = digit_items(seed=0)
    seen: dict[int, str] = {}
    for item in items:
        index = int(item.name.removeprefix("digit_").removesuffix(".jpg"))
        assert seen.setdefault(index, item.split) == item.split and labels[index] == int(item.label)
        decoded = cv2.imdecode(np.frombuffer(item.jpeg, np.uint8), cv2.IMREAD_UNCHANGED)
        small = cv2.resize(decoded, (8, 8), interpolation=cv2.INTER_AREA).astype(float)
        assert decoded.shape == (64, 64) and np.abs(small - images[index]).mean() < 24  # the digit, upscaled
    assert len(seen) == len(items) == 2 * 10 * DIGITS_PER_SPLIT
    assert {item.name for item in digit_items(seed=1)} != {item.name for item in items}
