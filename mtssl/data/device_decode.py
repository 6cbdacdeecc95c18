"""JPEG decoding on the GPU (nvJPEG), as an option: loader workers then only read bytes.

With ``--jpeg-decode device`` the workers hand over each JPEG field's stored bytes instead of pixels
(every other field is still decoded in the worker: PNG masks and bins, npy, json), and the trainer's
process decodes each batch's JPEGs on the device in one batched call right after the host-to-device
copy (:func:`decode_on_device`, called by ``mtssl.data.stream.to_device``). A worker's cost per
sample drops to reading and copying bytes. The CPU decode stays the default and the reference: nvJPEG
and libjpeg-turbo differ by a level here and there (IDCT and chroma upsampling), so the two paths agree
within a tolerance, not bit for bit.

Decoders, in order of preference (either one is a plain ``pip install`` next to a CUDA build of
torch): ``torchvision.io.decode_jpeg(..., device="cuda")`` and NVIDIA nvImageCodec
(``nvidia-nvimgcodec-cu12``). :func:`backend` says which one is usable here, or why none is.

Which fields go this way, and whether they decode to RGB or gray, the field table says
(``mtssl.contract.fields``: ``device_decode``, ``channels``). Batch layout of such a field in transit
(batch key ``k``, e.g. ``rgb`` or ``l``): ``k.jpeg`` the bytes of all N images concatenated (uint8),
``k.jpeg_sizes`` their lengths (N,), and, when the task crops (motion) a croppable field,
``k.jpeg_window`` (N, 4) = top, left, height, width of each image's crop, drawn in the worker exactly as
the CPU path draws it (from the stored size, read from the JPEG header).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from functools import lru_cache

import torch

from mtssl.contract import FIELDS_BY_KEY

RAW_SUFFIXES = (".jpeg", ".jpeg_sizes", ".jpeg_window")
Decoder = Callable[[list[torch.Tensor], bool, torch.device], list[torch.Tensor]]


def backend() -> tuple[str | None, str]:
    """(the usable GPU JPEG decoder's name, or None; a line saying what was found)."""
    if not torch.cuda.is_available():
        return None, "no CUDA device"
    try:
        from torchvision.io import decode_jpeg  # noqa: F401

        return "torchvision", "torchvision.io.decode_jpeg on CUDA (nvJPEG)"
    except Exception:  # noqa: BLE001 - an import of a mismatched build fails in many ways
        pass
    try:
        from nvidia import nvimgcodec  # noqa: F401

        return "nvimgcodec", "NVIDIA nvImageCodec (nvJPEG)"
    except Exception:  # noqa: BLE001
        return None, "neither torchvision nor nvidia-nvimgcodec-cu12 imports next to this torch"


@lru_cache(maxsize=1)
def require_backend() -> Decoder:
    """The batched decoder of :func:`backend`; ValueError saying what to install when there is none."""
    name, found = backend()
    if name is None:
        raise ValueError(
            f"--jpeg-decode device needs a CUDA device and a GPU JPEG decoder ({found}): install torchvision "
            "built for this torch, or nvidia-nvimgcodec-cu12; or keep the default --jpeg-decode cpu"
        )
    return _torchvision_decode if name == "torchvision" else _nvimgcodec_decode


def _torchvision_decode(blobs: list[torch.Tensor], gray: bool, device: torch.device) -> list[torch.Tensor]:
    from torchvision.io import ImageReadMode, decode_jpeg

    mode = ImageReadMode.GRAY if gray else ImageReadMode.RGB
    return list(decode_jpeg(blobs, mode=mode, device=device))


def _nvimgcodec_decode(blobs: list[torch.Tensor], gray: bool, device: torch.device) -> list[torch.Tensor]:
    decoder = _nvimgcodec_decoder(device.index or 0)
    images = decoder.decode([blob.numpy().tobytes() for blob in blobs])
    out = [torch.as_tensor(image, device=device).permute(2, 0, 1) for image in images]  # HWC RGB -> CHW
    return [image[:1] for image in out] if gray else out  # a gray JPEG decodes to three equal planes


_DECODERS: dict[int, object] = {}


def _nvimgcodec_decoder(index: int):
    from nvidia import nvimgcodec

    if index not in _DECODERS:
        _DECODERS[index] = nvimgcodec.Decoder(device_id=index)
    return _DECODERS[index]


def jpeg_size(data: bytes) -> tuple[int, int]:
    """(height, width) from a JPEG's start-of-frame header, without decoding; ValueError if absent."""
    pos = 2
    if data[:2] != b"\xff\xd8":
        raise ValueError("corrupt JPEG: no start-of-image marker")
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            raise ValueError("corrupt JPEG: bad marker")
        marker = data[pos + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # markers without a length
            pos += 2
            continue
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # SOFn
            height, width = struct.unpack(">HH", data[pos + 5 : pos + 9])
            return height, width
        pos += 2 + length
    raise ValueError("corrupt JPEG: no frame header")


def pack(blobs: Sequence[bytes]) -> tuple[torch.Tensor, torch.Tensor]:
    """JPEG bytes of a batch -> (concatenated uint8, lengths int64)."""
    sizes = torch.tensor([len(b) for b in blobs], dtype=torch.int64)
    flat = torch.frombuffer(bytearray(b"".join(blobs)), dtype=torch.uint8)
    return flat, sizes


def decode_on_device(
    batch: dict[str, torch.Tensor], device: torch.device, decoder: Decoder | None = None
) -> dict[str, torch.Tensor]:
    """Replace a batch's JPEG bytes by the decoded (and cropped) images, stacked (N, C, H, W) uint8 on
    ``device``. ``decoder`` defaults to :func:`require_backend`'s (tests pass a CPU one)."""
    raw = sorted({key.rsplit(".", 1)[0] for key in batch if key.endswith(".jpeg")})
    if not raw:
        return batch
    decoder = decoder or require_backend()
    out = {k: v for k, v in batch.items() if not k.endswith(RAW_SUFFIXES)}
    for key in raw:
        sizes = batch[f"{key}.jpeg_sizes"].cpu().tolist()
        blobs = list(torch.split(batch[f"{key}.jpeg"].cpu(), sizes))
        images = decoder(blobs, not FIELDS_BY_KEY[key].colour, device)
        window = batch.get(f"{key}.jpeg_window")
        if window is not None:
            images = [img[:, y : y + h, x : x + w] for img, (y, x, h, w) in zip(images, window.tolist(), strict=True)]
        out[key] = torch.stack(images).contiguous()
    return out
