"""The encodings a field's extension names (JPEG, PNG, npy never pickled, JSON), and the tilings of stored
images. Which fields exist, and how each is batched, is the field table (``mtssl.contract.fields``)."""

from __future__ import annotations

import json
import math
import re
from functools import lru_cache
from typing import Any

import cv2
import numpy as np


def encode_jpeg(image: np.ndarray, quality: int = 95) -> bytes:
    """Encode an RGB (H, W, 3) or gray (H, W) uint8 image as JPEG (4:2:0 for colour)."""
    bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if image.ndim == 3 else np.ascontiguousarray(image)
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buf.tobytes()


def decode_jpeg(data: bytes, gray: bool = False) -> np.ndarray:
    """Decode JPEG bytes to RGB (H, W, 3) or gray (H, W) uint8; raises ValueError when corrupt."""
    if not gray:
        return decode_jpeg_bgr(data)[..., ::-1]
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
    if image is None:
        raise ValueError("corrupt JPEG")
    return image


def decode_jpeg_bgr(data: bytes) -> np.ndarray:
    """Decode colour JPEG bytes to OpenCV's BGR (H, W, 3) uint8, contiguous (the loader writes its planes
    into a batch in RGB order itself); raises ValueError when corrupt."""
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError("corrupt JPEG")
    return image


def encode_png(image: np.ndarray, rle: bool = False) -> bytes:
    """Lossless PNG of a uint8 or uint16 single-channel image (fixed compression: deterministic); ``rle``:
    zlib's run-length strategy, for the colour bins (smaller and faster there; see docs/shard-format.md)."""
    if image.dtype not in (np.uint8, np.uint16) or image.ndim != 2:
        raise ValueError(f"PNG fields hold 2-D uint8/uint16 arrays, got {image.dtype} {image.shape}")
    strategy = cv2.IMWRITE_PNG_STRATEGY_RLE if rle else cv2.IMWRITE_PNG_STRATEGY_DEFAULT
    ok, buf = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, 6, cv2.IMWRITE_PNG_STRATEGY, strategy])
    if not ok:
        raise ValueError("PNG encoding failed")
    return buf.tobytes()


def decode_png(data: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None or image.ndim != 2:
        raise ValueError("corrupt or non-single-channel PNG")
    return image


def encode_npy(array: np.ndarray) -> bytes:
    """``np.save``'s bytes (format 1.0), with the header made once per dtype and shape."""
    array = np.ascontiguousarray(array)
    if array.dtype.hasobject:
        raise ValueError("npy fields hold plain arrays, not Python objects")
    return _npy_header(array.dtype.str, array.shape) + array.tobytes()


@lru_cache(maxsize=64)
def _npy_header(dtype: str, shape: tuple[int, ...]) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, np.empty(shape, np.dtype(dtype)), allow_pickle=False)
    return buf.getvalue()[: len(buf.getvalue()) - math.prod(shape) * np.dtype(dtype).itemsize]


_NPY_HEADER = re.compile(rb"\{'descr': '([<>|=]?[biuf][1248])', 'fortran_order': False, 'shape': \(([0-9, ]*)\), \}")


def decode_npy(data: bytes) -> np.ndarray:
    """``.npy`` bytes to an array, never unpickling. The headers ``encode_npy`` writes (format 1.0, a plain
    numeric dtype, C order) are parsed with one regular expression and the payload taken as a buffer:
    ``np.load`` parses the header with ``ast.literal_eval``, which cost a fifth of a colour sample's
    loader time. Anything else goes through ``np.load(allow_pickle=False)``. ValueError when corrupt."""
    import io

    if data[:8] == b"\x93NUMPY\x01\x00" and len(data) >= 10:
        end = 10 + int.from_bytes(data[8:10], "little")
        match = _NPY_HEADER.match(data, 10, end)
        if match:
            dtype = np.dtype(match[1].decode())
            shape = tuple(int(n) for n in match[2].split(b",") if n.strip())
            if len(data) - end != dtype.itemsize * math.prod(shape):
                raise ValueError(f"npy payload of {len(data) - end} bytes for shape {shape} {dtype}")
            return np.frombuffer(data, dtype, offset=end).reshape(shape).copy()  # writable, as np.load's
    return np.load(io.BytesIO(data), allow_pickle=False)


def encode_json(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def decode_json(data: bytes) -> dict[str, Any]:
    return json.loads(data)


EXTENSION_DECODERS = {"jpg": decode_jpeg, "png": decode_png, "npy": decode_npy, "json": decode_json}
"""Extension -> decoder; a field's own decoder (a gray JPEG's included) is ``mtssl.contract.fields.DECODERS``."""


def tile(images: list[np.ndarray], cols: int) -> np.ndarray:
    """Tile equally sized images row-major into one image with ``cols`` columns."""
    rows = [np.concatenate(images[r : r + cols], axis=1) for r in range(0, len(images), cols)]
    return np.concatenate(rows, axis=0)


def untile(image: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Inverse of :func:`tile`: (rows*h, cols*w, ...) -> (rows*cols, h, w, ...)."""
    h, w = image.shape[0] // rows, image.shape[1] // cols
    parts = image.reshape(rows, h, cols, w, *image.shape[2:]).swapaxes(1, 2)
    return parts.reshape(rows * cols, h, w, *image.shape[2:])
