"""Reading one source image safely: every failure becomes a :class:`Reject` with a reason.

Pillow reads the header first, so absurd dimensions (decompression bombs) are refused before any
pixel is decoded, and truncated files raise instead of decoding to grey. CMYK, 16-bit, palette,
grayscale and alpha images are converted to 8-bit RGB; what the source was is reported so that the
index can record it.
"""

from __future__ import annotations

import errno
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from pipelines.errors import Reject, check_still_there

# We check dimensions ourselves (max_pixels), before decoding; Pillow's own guard would only warn.
Image.MAX_IMAGE_PIXELS = None

ORIENTATION = 0x0112  # the EXIF tag of the camera's orientation
DEFAULT_MAX_PIXELS = 100_000_000  # 10k x 10k: beyond any photo a pretext task needs.


@dataclass(frozen=True)
class LoadedImage:
    rgb: np.ndarray  # (H, W, 3) uint8
    source_mode: str  # Pillow mode of the file: RGB, L, CMYK, I;16, RGBA, P, ...
    source_size: tuple[int, int]  # (width, height) in the file


def read_bytes(path: Path) -> bytes:
    """The file's bytes, or a Reject for empty, missing, looping or unreadable files."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise Reject("unreadable", "symlink loop") from exc
        if exc.errno == errno.ENOENT:
            check_still_there(path)
            raise Reject("unreadable", "missing file or broken symlink") from exc
        if exc.errno == errno.EISDIR:
            raise Reject("unreadable", "is a directory") from exc
        raise Reject("unreadable", exc.strerror or str(exc)) from exc
    if not data:
        raise Reject("empty file")
    return data


def load_rgb(
    path: Path, max_pixels: int = DEFAULT_MAX_PIXELS, min_side: int = 1, draft_side: int | None = None
) -> LoadedImage:
    """Decode an image file to 8-bit RGB.

    ``min_side`` rejects images whose shorter side is smaller. ``draft_side`` lets the JPEG decoder
    scale down by a power of two in the DCT domain while keeping the shorter side at least that long
    (a large speed-up for big photos; no effect on other formats).
    """
    data = read_bytes(path)
    try:
        image = Image.open(io.BytesIO(data))
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise Reject("not an image", type(exc).__name__) from exc
    width, height = image.size
    if width * height > max_pixels:
        raise Reject("too large", f"{width}x{height} exceeds max_pixels={max_pixels}")
    if min(width, height) < min_side:
        raise Reject("too small", f"{width}x{height}, shorter side below {min_side}")
    mode = image.mode
    if draft_side and image.format == "JPEG" and mode in ("RGB", "L"):
        scale = min(width, height) / draft_side
        if scale >= 2:
            image.draft(mode, (int(np.ceil(width / scale)), int(np.ceil(height / scale))))
    try:
        image.load()
        if image.getexif().get(ORIENTATION, 1) != 1:  # exif_transpose copies even when there is nothing to do
            image = ImageOps.exif_transpose(image)
        rgb = _to_rgb8(image)
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise Reject("corrupt image", str(exc)[:200]) from exc
    return LoadedImage(rgb=rgb, source_mode=mode, source_size=(width, height))


def _to_rgb8(image: Image.Image) -> np.ndarray:
    """Convert any Pillow mode to (H, W, 3) uint8 RGB; alpha is composited onto white."""
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        array = np.asarray(image, dtype=np.float64)
        hi = 65535.0 if mode.startswith("I;16") or array.max() > 255 else 255.0
        gray = np.clip(np.rint(array * (255.0 / hi)), 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    rgb = np.asarray(image if image.mode == "RGB" else image.convert("RGB"), dtype=np.uint8)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"unexpected decoded shape {rgb.shape}")
    return np.ascontiguousarray(rgb)
