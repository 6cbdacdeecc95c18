"""Reading one source image safely: every failure becomes a :class:`Reject` with a reason.

Only a regular file of at most ``max_bytes`` is read (``pipelines.sources.read_regular``: a pipe or a
device is a reject, never a wait). Pillow reads the header first, so absurd dimensions (decompression
bombs) are refused before any pixel is decoded, and truncated files raise instead of decoding to grey.
Every mode is converted to 8-bit RGB by its actual range (docs/shard-format.md, "How source images are
read", has the table): 16-bit samples by 65535, float samples in [0, 1] by 255 and in [0, 255] as they
are; a range with no such reading (negative, above 255, NaN, 32-bit integers) is a reject that says what
it is, never a black or clipped sample. What the source was is reported so that the index can record it.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, TiffImagePlugin, UnidentifiedImageError

from pipelines.errors import Reject
from pipelines.sources import MAX_IMAGE_BYTES, read_regular

# We check dimensions ourselves (max_pixels), before decoding; Pillow's own guard would only warn.
Image.MAX_IMAGE_PIXELS = None

ORIENTATION = 0x0112  # the EXIF tag of the camera's orientation
DEFAULT_MAX_PIXELS = 100_000_000  # 10k x 10k: beyond any photo a pretext task needs.
DEFAULT_MAX_BYTES = MAX_IMAGE_BYTES  # 1 GiB: the file is held whole in memory (sources.py says why this much)
BAD_RANGE = "unsupported pixel range"
BAD_FORMAT = "unsupported pixel format"
GRAY16 = ("I;16", "I;16B", "I;16L", "I;16N")
INTEGER_MODES = (*GRAY16, "I")
TIFF_MAGIC = (b"II*\0", b"MM\0*")
HALF_LEVEL = 0.5 / 255  # float samples this far outside their range are rounding, not another range


@dataclass(frozen=True)
class LoadedImage:
    rgb: np.ndarray  # (H, W, 3) uint8
    source_mode: str  # Pillow mode of the file: RGB, L, CMYK, I;16, RGBA, P, ...
    source_size: tuple[int, int]  # (width, height) in the file


def read_bytes(path: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """The file's bytes, or a Reject for empty, missing, looping, unreadable, oversized files and anything
    that is not a regular file (a FIFO, a device, a socket, a directory)."""
    data = read_regular(path, max_bytes)
    if not data:
        raise Reject("empty file")
    return data


def load_rgb(
    path: Path,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    min_side: int = 1,
    draft_side: int | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> LoadedImage:
    """Decode an image file to 8-bit RGB (the first frame of a multi-frame file).

    ``min_side`` rejects images whose shorter side is smaller. ``draft_side`` lets the JPEG decoder
    scale down by a power of two in the DCT domain while keeping the shorter side at least that long
    (a large speed-up for big photos; no effect on other formats). ``max_bytes`` caps the file's size.
    """
    image = _open_image(read_bytes(path, max_bytes))
    width, height = image.size
    if width * height > max_pixels:
        raise Reject("too large", f"{width}x{height} exceeds max_pixels={max_pixels}")
    if min(width, height) < min_side:
        raise Reject("too small", f"{width}x{height}, shorter side below {min_side}")
    mode = image.mode
    white = _integer_white(image) if mode in INTEGER_MODES else 0  # from the header: lost by exif_transpose
    if draft_side and image.format == "JPEG" and mode in ("RGB", "L"):
        scale = min(width, height) / draft_side
        if scale >= 2:
            image.draft(mode, (int(np.ceil(width / scale)), int(np.ceil(height / scale))))
    try:
        image.load()
        if image.getexif().get(ORIENTATION, 1) != 1:  # exif_transpose copies even when there is nothing to do
            image = ImageOps.exif_transpose(image)
        rgb = _to_rgb8(image, white)
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise Reject("corrupt image", str(exc)[:200]) from exc
    return LoadedImage(rgb=rgb, source_mode=mode, source_size=(width, height))


def _open_image(data: bytes) -> Image.Image:
    """Pillow's lazy image (header read, no pixel decoded); Reject when it is no image Pillow knows."""
    try:
        return Image.open(io.BytesIO(data))
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        problem = _tiff_problem(data)
        if problem:
            raise Reject(BAD_FORMAT, problem) from exc
        raise Reject("not an image", type(exc).__name__) from exc


def _tiff_problem(data: bytes) -> str | None:
    """Why Pillow cannot read a TIFF whose header is sound (its samples: float RGB, 64-bit, ...), else None."""
    if data[:4] not in TIFF_MAGIC:
        return None
    try:
        TiffImagePlugin.TiffImageFile(io.BytesIO(data))
    except SyntaxError as exc:
        if "pixel mode" in str(exc):
            return f"a TIFF with samples Pillow does not read ({exc}: e.g. float RGB or 64-bit); convert to 8 or 16 bit"
    except Exception:  # any other failure is a damaged TIFF: "not an image" says enough
        return None
    return None


def _to_rgb8(image: Image.Image, white: int = 65535) -> np.ndarray:
    """Convert any Pillow mode to (H, W, 3) uint8 RGB; alpha is composited onto white. One-channel integer
    images are scaled by ``white`` (:func:`_integer_white`), float ones by their range (:func:`_gray8`)."""
    mode = image.mode
    if mode in INTEGER_MODES or mode == "F":
        return np.repeat(_gray8(image, white)[..., None], 3, axis=2)
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    rgb = np.asarray(image if image.mode == "RGB" else _convert_rgb(image), dtype=np.uint8)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"unexpected decoded shape {rgb.shape}")
    return np.ascontiguousarray(rgb)


def _convert_rgb(image: Image.Image) -> Image.Image:
    """Pillow's conversion to RGB (1-bit, L, P, CMYK, YCbCr, LAB, HSV, ...); Reject for a mode it lacks."""
    try:
        return image.convert("RGB")
    except ValueError as exc:
        raise Reject(BAD_FORMAT, f"Pillow mode {image.mode} has no conversion to RGB") from exc


def _gray8(image: Image.Image, white: int) -> np.ndarray:
    """A one-channel integer (white level ``white``) or float image as uint8; Reject for a range that has no
    8-bit reading, so that no sample is silently black or clipped."""
    array = np.asarray(image)
    if image.mode == "F":
        return _float_gray8(array)
    low, high = int(array.min()), int(array.max())
    if low < 0 or high > white:
        raise Reject(BAD_RANGE, f"integer samples from {low} to {high}, outside 0..{white}")
    return np.rint(array.astype(np.float32) * np.float32(255 / white)).astype(np.uint8)


def _integer_white(image: Image.Image) -> int:
    """The white level of an integer image: its type's largest value. Pillow reads 16-bit gray PNG and PGM (of any
    maxval, rescaled) as I;16 or I with white 65535; a TIFF says its sample width and sign. A 32-bit sample
    has no white level (depth, counts, labels: not a picture), so it is rejected."""
    if image.mode in GRAY16 or image.format != "TIFF":
        return 65535
    bits = _first(image.tag_v2.get(TiffImagePlugin.BITSPERSAMPLE, 16))
    signed = _first(image.tag_v2.get(TiffImagePlugin.SAMPLEFORMAT, 1)) == 2
    if bits > 16:
        raise Reject(BAD_RANGE, f"{bits}-bit integer samples have no white level; convert to 8 or 16 bit")
    return 2 ** (bits - signed) - 1


def _first(value: int | tuple[int, ...]) -> int:
    """A TIFF tag's first value (per-sample tags are tuples)."""
    return int(value[0] if isinstance(value, tuple) else value)


def _float_gray8(array: np.ndarray) -> np.ndarray:
    """Float samples: [0, 1] scaled by 255 when the largest is at most 1, else [0, 255] as they are (half a
    level of rounding allowed either way). Anything else (negative, above 255, NaN, infinite: signed, HDR or
    measured data) is rejected rather than min-max stretched, which would give each image its own brightness
    and let one bright pixel darken the rest."""
    if not np.isfinite(array).all():
        raise Reject(BAD_RANGE, "float samples that are not finite (NaN or infinite)")
    low, high = float(array.min()), float(array.max())
    white = 1.0 if high <= 1 + HALF_LEVEL else 255.0
    if low < -HALF_LEVEL * white or high > white * (1 + HALF_LEVEL):
        raise Reject(BAD_RANGE, f"float samples from {low:.4g} to {high:.4g}, in neither [0, 1] nor [0, 255]")
    return np.clip(np.rint(array * np.float32(255 / white)), 0, 255).astype(np.uint8)
