"""Labelled image folders for the probes (``mtssl.eval.folders``): listing, seeded split, decoding, hashing."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from mtssl.eval.folders import (
    HIDDEN,
    NOT_IMAGE_TYPE,
    NOT_IN_CLASS,
    Labelled,
    data_hash,
    list_labelled,
    load_images,
    load_square,
    split_labelled,
)


def write_image(path: Path, bgr: tuple[int, int, int], shape: tuple[int, int] = (48, 48)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = np.zeros((*shape, 3), np.uint8) + np.array(bgr, np.uint8)
    cv2.imwrite(str(path), image)
    return path


@pytest.fixture
def labelled(tmp_path: Path) -> Path:
    """``root/{cat,dog,emu}/``: 4, 6 and 2 PNG/JPEG images, plus things that are not class images."""
    root = tmp_path / "pets"
    for i in range(4):
        write_image(root / "cat" / f"c{i}.png", (0, 0, 200 + i))
    for i in range(6):
        write_image(root / "dog" / ("sub" if i % 2 else "") / f"d{i}.JPG", (0, 150 + i, 0))
    for i in range(2):
        write_image(root / "emu" / f"e{i}.jpeg", (100 + i, 0, 0))
    (root / "dog" / "notes.txt").write_text("not an image")
    (root / ".hidden").mkdir()
    write_image(root / ".hidden" / "x.png", (1, 2, 3))
    write_image(root / "stray.png", (1, 2, 3))  # not in a class folder
    return root


def test_list_labelled_finds_every_class_image(labelled: Path):
    data = list_labelled(labelled)
    assert data.classes == ("cat", "dog", "emu")
    assert len(data) == 12
    assert list(data.labels) == [0] * 4 + [1] * 6 + [2] * 2
    assert all(p.suffix.lower() in {".png", ".jpg", ".jpeg"} for p in data.paths)
    assert {p.parent.name for p in data.paths if data.labels[data.paths.index(p)] == 1} == {"dog", "sub"}
    assert data.skipped == {  # everything else under the folder is reported, with its reason
        str(labelled / ".hidden"): HIDDEN,
        str(labelled / "stray.png"): NOT_IN_CLASS,
        str(labelled / "dog" / "notes.txt"): NOT_IMAGE_TYPE,
    }


def test_list_labelled_takes_the_train_splits_class_order(labelled: Path):
    data = list_labelled(labelled, classes=("emu", "cat", "dog"))
    assert data.classes == ("emu", "cat", "dog")
    assert list(data.labels) == [0] * 2 + [1] * 4 + [2] * 6
    assert all(p.parent.name == "emu" for p in data.paths[:2])


def test_list_labelled_refuses_a_missing_folder_or_a_single_class(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="no labelled folder"):
        list_labelled(tmp_path / "nowhere")
    write_image(tmp_path / "one" / "only" / "a.png", (0, 0, 0))
    with pytest.raises(FileNotFoundError, match="1 class folder"):
        list_labelled(tmp_path / "one")


def test_split_is_stratified_disjoint_complete_and_seeded(labelled: Path):
    data = list_labelled(labelled)
    train, val = split_labelled(data, 0.5, seed=0)
    assert set(train.paths).isdisjoint(val.paths)
    assert set(train.paths) | set(val.paths) == set(data.paths)
    assert train.classes == val.classes == data.classes
    assert np.bincount(train.labels).tolist() == [2, 3, 1]
    assert np.bincount(val.labels).tolist() == [2, 3, 1]
    for part in (train, val):  # labels still belong to their paths
        for path, label in zip(part.paths, part.labels, strict=True):
            assert data.labels[data.paths.index(path)] == label
    again = split_labelled(data, 0.5, seed=0)
    assert again == (train, val)
    others = [split_labelled(data, 0.5, seed=s)[0].paths for s in range(1, 6)]
    assert any(set(o) != set(train.paths) for o in others)


def test_split_keeps_a_validation_image_of_every_class_with_two(labelled: Path):
    train, val = split_labelled(list_labelled(labelled), 0.95, seed=3)
    assert np.bincount(val.labels, minlength=3).min() >= 1
    train, val = split_labelled(list_labelled(labelled), 0.05, seed=3)
    assert np.bincount(train.labels, minlength=3).min() >= 1


def test_load_square_is_rgb_and_centre_cropped(tmp_path: Path):
    image = np.zeros((40, 80, 3), np.uint8)
    image[:, :20] = (255, 0, 0)  # blue (BGR) left quarter, cut by the centre crop
    image[:, 20:60] = (0, 0, 255)  # red centre
    path = tmp_path / "wide.png"
    cv2.imwrite(str(path), image)
    square = load_square(path, 20)
    assert square.shape == (20, 20, 3) and square.dtype == np.uint8
    assert square.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(square[:, 1:-1], np.broadcast_to(np.array([255, 0, 0], np.uint8), (20, 18, 3)))
    upscaled = load_square(path, 60)  # smaller than asked: resized up
    assert upscaled.shape == (60, 60, 3)


def test_load_images_skips_undecodable_files_with_a_reason(labelled: Path):
    bad = labelled / "cat" / "bad.jpg"
    bad.write_bytes(b"\xff\xd8 this is no jpeg" * 4)
    (labelled / "cat" / "empty.png").write_bytes(b"")
    data = list_labelled(labelled)
    assert len(data) == 14
    images, labels, kept = load_images(data, 16)
    assert images.shape == (12, 16, 16, 3) and images.dtype == np.uint8
    assert labels.dtype == np.int64 and labels.tolist() == list(kept.labels)
    undecodable = {str(bad), str(labelled / "cat" / "empty.png")}
    assert set(kept.skipped) == set(data.skipped) | undecodable  # the listing's skips are kept
    assert all("decod" in kept.skipped[path] for path in undecodable)
    assert bad not in kept.paths
    red = images[kept.paths.index(labelled / "cat" / "c0.png")]
    assert tuple(red[8, 8]) == (200, 0, 0)


def test_load_images_refuses_a_set_with_no_image(tmp_path: Path):
    (tmp_path / "junk.jpg").write_bytes(b"junk")
    with pytest.raises(FileNotFoundError, match="none of the 1 files"):
        load_images(Labelled((tmp_path / "junk.jpg",), (0,), ("a", "b")), 16)


def test_data_hash_follows_image_bytes_and_labels(labelled: Path):
    data = list_labelled(labelled)
    train, val = split_labelled(data, 0.5, seed=0)
    before = data_hash(train, val)
    assert data_hash(train, val) == before
    assert data_hash(*split_labelled(data, 0.5, seed=1)) != before  # another split, other sets
    relabelled = Labelled(train.paths, tuple(1 - min(label, 1) for label in train.labels), train.classes)
    assert data_hash(relabelled, val) != before
    target = train.paths[0]
    image = cv2.imread(str(target))
    image[0, 0] = 255 - image[0, 0]
    cv2.imwrite(str(target), image)
    assert data_hash(train, val) != before
