"""The bad-input corpus: one file per kind of broken or awkward input, with the outcome each must have."""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

# file -> None when it must become a sample, else the reject reason it must get
EXPECTED = {
    "ok/photo.jpg": None,
    "ok/cmyk.jpg": None,
    "ok/gray.jpg": None,
    "ok/deep16.png": None,
    "ok/rgb16.png": None,
    "ok/alpha.png": None,
    "ok/palette.png": None,
    "ok/rotated_exif.jpg": None,
    "bad/empty.jpg": "empty file",
    "bad/truncated.jpg": "corrupt image",
    "bad/truncated.png": "corrupt image",
    "bad/text.jpg": "not an image",
    "bad/notes.txt": "not an image",
    "bad/tiny.png": "too small",
    "bad/bomb.png": "too large",
    "bad/self_loop.jpg": "unreadable",
    "bad/dangling.jpg": "unreadable",
    ".hidden": "hidden file",
    "bad/.photo.jpg": "hidden file",  # a good image, but hidden: counted, not silently skipped
    "bad/caf\\xe9.jpg": "file name not UTF-8",  # b"caf\xe9.jpg" (Latin-1), as the rejects show it
}
NAME_REASONS = {"hidden file", "file name not UTF-8"}  # decided by the name, before any read


def _photo(height: int = 300, width: int = 400) -> np.ndarray:
    from skimage import data

    return cv2.resize(data.astronaut(), (width, height), interpolation=cv2.INTER_AREA)


def _png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG whose header claims width x height, with a token IDAT: what a decompression bomb looks like."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )


def write_corpus(root: Path) -> Path:
    (root / "ok").mkdir(parents=True)
    (root / "bad").mkdir()
    rgb = _photo()
    Image.fromarray(rgb).save(root / "ok/photo.jpg", quality=90)
    Image.fromarray(rgb).convert("CMYK").save(root / "ok/cmyk.jpg", quality=90)
    Image.fromarray(rgb).convert("L").save(root / "ok/gray.jpg", quality=90)
    deep = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.uint16) * 257
    cv2.imwrite(str(root / "ok/deep16.png"), deep)
    cv2.imwrite(str(root / "ok/rgb16.png"), rgb[..., ::-1].astype(np.uint16) * 257)
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 128, np.uint8)])
    Image.fromarray(rgba).save(root / "ok/alpha.png")
    Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE).save(root / "ok/palette.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    Image.fromarray(_photo(300, 420)).save(root / "ok/rotated_exif.jpg", exif=exif)
    (root / "bad/empty.jpg").write_bytes(b"")
    jpeg = (root / "ok/photo.jpg").read_bytes()
    (root / "bad/truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    png = (root / "ok/alpha.png").read_bytes()
    (root / "bad/truncated.png").write_bytes(png[: len(png) // 2])
    (root / "bad/text.jpg").write_text("this is not a JPEG\n")
    (root / "bad/notes.txt").write_text("label notes\n")
    Image.fromarray(rgb[:20, :20]).save(root / "bad/tiny.png")
    _png_header_only(root / "bad/bomb.png", 60_000, 60_000)
    os.symlink("self_loop.jpg", root / "bad/self_loop.jpg")
    os.symlink("does_not_exist.jpg", root / "bad/dangling.jpg")
    os.symlink("..", root / "bad/dir_loop")  # a directory loop: listing must end and not duplicate
    (root / ".hidden").write_text("not an input")
    (root / "bad/.photo.jpg").write_bytes(jpeg)
    with open(os.path.join(os.fsencode(root / "bad"), b"caf\xe9.jpg"), "wb") as fh:
        fh.write(jpeg)
    return root


@pytest.fixture()
def bad_corpus(tmp_path: Path) -> Path:
    return write_corpus(tmp_path / "corpus")
