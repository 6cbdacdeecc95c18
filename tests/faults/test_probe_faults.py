"""Labelled folders with faults (broken images, GIFs, other files, a FIFO, an empty class) under the probe.

Every file under a labelled folder is read or reported as skipped, with its reason, on the terminal and in
the JSON; a class folder without a single image the probe reads is refused in one line, before any feature
is computed.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from mtssl.eval import folders
from mtssl.eval.cli import app
from mtssl.eval.folders import IMAGE_SUFFIXES, list_labelled, load_images

pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs are POSIX")


def write_jpg(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((32, 32, 3), value, np.uint8))


def faulty_tree(root: Path, empty_class: bool) -> Path:
    """``cat/`` (4 JPEGs, a broken one, two other files, a hidden one, a FIFO named .jpg), ``dog/`` (3 JPEGs
    and a GIF) and, with ``empty_class``, an empty ``emu/``."""
    for i in range(4):
        write_jpg(root / "cat" / f"{i}.jpg", 30 + 10 * i)
    for i in range(3):
        write_jpg(root / "dog" / f"{i}.jpg", 200 + 10 * i)
    Image.fromarray(np.full((32, 32, 3), 180, np.uint8)).save(root / "dog" / "3.gif")
    (root / "cat" / "broken.jpg").write_bytes(b"\xff\xd8\xff not a JPEG after all" * 8)
    (root / "cat" / "labels.csv").write_text("0.jpg,cat\n")
    (root / "cat" / "notes.txt").write_text("not an image")
    write_jpg(root / "cat" / ".thumb.jpg", 99)
    os.mkfifo(root / "cat" / "pipe.jpg")  # opened for reading, it blocks until a writer comes: never
    if empty_class:
        (root / "emu").mkdir()
    return root


@pytest.fixture
def no_hang():
    """A probe that opens the FIFO blocks for ever: end it with an error instead."""

    def fail(signum, frame):
        raise TimeoutError("blocked for 120 s: a FIFO in the labelled folder was opened")

    previous = signal.signal(signal.SIGALRM, fail)
    signal.alarm(120)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


@pytest.fixture(scope="module")
def trunk(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny untrained trunk (depth 18, width 4) as mtssl-train exports it."""
    import torch

    from mtssl.model import MultiTaskNet, NetworkConfig
    from mtssl.tasks import ColorHeadConfig, RelposHeadConfig
    from mtssl.train.checkpoint import export_trunk

    torch.manual_seed(0)
    heads = {
        "relpos": RelposHeadConfig(patch_channels=8, patch_dim=32, pair_dims=(32,)),
        "color": ColorHeadConfig(hidden=32),
    }
    net = MultiTaskNet(NetworkConfig(tasks=("relpos", "color"), depth=18, width=4), heads)
    run = tmp_path_factory.mktemp("run")
    return export_trunk(run, net, json.dumps(net.resolved_config()), step=1)


def probe(trunk: Path, tmp_path: Path, *folder_args: str):
    args = ["probe", "--trunk", str(trunk), *folder_args, "--size", "32", "--random-seeds", "1"]
    args += ["--feature-dims", "64", "--cache-dir", str(tmp_path / "cache"), "--json", str(tmp_path / "out.json")]
    return CliRunner().invoke(app, args)


def expected_skips(root: Path) -> dict[str, str]:
    cat = root / "cat"
    return {
        str(cat / "labels.csv"): "not an image type the probe reads",
        str(cat / "notes.txt"): "not an image type the probe reads",
        str(cat / "pipe.jpg"): "not a regular file",
        str(cat / ".thumb.jpg"): "hidden",
        str(cat / "broken.jpg"): "not a decodable image",
    }


# ---- listing -------------------------------------------------------------------------------------------------


def test_the_listing_reads_gifs_and_reports_every_other_file_with_its_reason(tmp_path, no_hang):
    root = faulty_tree(tmp_path / "pets", empty_class=False)
    data = list_labelled(root)
    assert root / "dog" / "3.gif" in data.paths
    assert len(data) == 4 + 1 + 3 + 1  # the broken JPEG is found here, and skipped when decoding
    expected = expected_skips(root)
    assert set(data.skipped) == set(expected) - {str(root / "cat" / "broken.jpg")}
    for path, reason in data.skipped.items():
        assert reason.startswith(expected[path]), (path, reason)
    assert "(reads: .jpg, .jpeg, .png" in data.skipped[str(root / "cat" / "notes.txt")]

    images, labels, kept = load_images(data, 16)
    assert len(images) == len(labels) == 8
    assert set(kept.skipped) == set(expected)
    assert kept.skipped[str(root / "cat" / "broken.jpg")] == "not a decodable image"
    gif = images[kept.paths.index(root / "dog" / "3.gif")]
    assert tuple(gif[8, 8]) == (180, 180, 180)


def test_a_gif_is_read_even_where_opencv_cannot_decode_it(tmp_path, monkeypatch):
    """OpenCV decodes GIF only from 4.11 (pyproject allows 4.9): Pillow reads the first frame then."""
    frames = [Image.fromarray(np.full((20, 30, 3), c, np.uint8)) for c in ((200, 10, 10), (10, 200, 10))]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:], duration=100)
    for decoder in ("imread", "imdecode"):
        monkeypatch.setattr(folders.cv2, decoder, lambda image, flags: None)
    square = folders.load_square(tmp_path / "a.gif", 10)
    assert square.shape == (10, 10, 3) and tuple(square[5, 5]) == (200, 10, 10)  # RGB, the first frame


@pytest.mark.parametrize("content", ["empty", "no-image-type", "hidden-only"])
def test_a_class_folder_without_an_image_type_is_refused_naming_it(tmp_path, content, no_hang):
    root = faulty_tree(tmp_path / "pets", empty_class=True)
    if content == "no-image-type":
        (root / "emu" / "readme.txt").write_text("emus go here")
    if content == "hidden-only":
        write_jpg(root / "emu" / ".e0.jpg", 90)
    with pytest.raises(FileNotFoundError) as refused:
        list_labelled(root)
    message = str(refused.value)
    assert str(root / "emu") in message and "\n" not in message
    if content != "empty":
        assert "skipped" in message


# ---- the command ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["empty", "none-decodes", "val-lacks-it", "val-empty"])
def test_the_probe_refuses_an_empty_class_in_one_line_before_any_feature(trunk, tmp_path, case, no_hang):
    root = faulty_tree(tmp_path / "pets", empty_class=True)
    folder_args = ["--images", str(root)]
    named = root / "emu"
    if case == "none-decodes":
        (named / "e0.jpg").write_bytes(b"corrupt")
        (named / "e1.png").write_bytes(b"")
    if case.startswith("val"):
        val = faulty_tree(tmp_path / "val", empty_class=case == "val-empty")
        write_jpg(named / "e0.jpg", 120)
        folder_args = ["--train", str(root), "--val", str(val)]
        named = val / "emu"
    result = probe(trunk, tmp_path, *folder_args)
    assert result.exit_code == 2, result.output
    message = result.stderr.strip()
    assert message.startswith("error: ") and "\n" not in message, message
    assert str(named) in message
    assert not (tmp_path / "cache").exists()  # refused before any feature was computed
    assert not (tmp_path / "out.json").exists()


def test_the_probe_prints_each_skip_reason_with_count_and_example_and_keeps_them_in_the_json(
    trunk, tmp_path, no_hang, one_thread
):
    root = faulty_tree(tmp_path / "pets", empty_class=False)
    result = probe(trunk, tmp_path, "--images", str(root))
    assert result.exit_code == 0, (result.output, result.exception)
    expected = expected_skips(root)
    written = json.loads((tmp_path / "out.json").read_text())
    assert set(written["skipped"]) == set(expected)
    assert written["n_train"] + written["n_val"] == 8

    lines = [line for line in result.stderr.splitlines() if line.strip()]
    for reason in sorted(set(expected.values())):
        paths = [path for path, why in expected.items() if why == reason]
        mine = [line for line in lines if reason in line]
        assert len(mine) == 1, (reason, lines)
        count = f"{len(paths)} file{'s' if len(paths) > 1 else ''}"
        assert count in mine[0] and any(path in mine[0] for path in paths), mine[0]
    assert len([line for line in lines if line.startswith("skipped ")]) == len(set(expected.values()))
    assert "Traceback" not in result.output


def test_probe_help_lists_the_image_types_it_reads():
    result = CliRunner().invoke(app, ["probe", "--help"], terminal_width=200)
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    assert all(suffix in text for suffix in IMAGE_SUFFIXES), text
    assert ".gif (first frame)" in text


def test_ctrl_c_during_a_probe_is_one_line_and_exit_130(tmp_path, monkeypatch):
    import mtssl.eval.probe as probe_module
    from mtssl.eval.cli import app

    def interrupted(options):
        raise KeyboardInterrupt

    monkeypatch.setattr(probe_module, "run_probe", interrupted)
    result = CliRunner().invoke(app, ["probe", "--run", str(tmp_path), "--images", str(tmp_path)])
    assert result.exit_code == 130
    assert (
        result.output.strip()
        == "interrupted (SIGINT); the features already extracted are cached: rerun the same command"
    )
