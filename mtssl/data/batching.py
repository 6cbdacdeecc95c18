"""Raw samples -> batches: each field decoded once and written once, into its slot of the batch.

This is the loader's only per-pixel work, and it is kept to the decode itself. The earlier loader decoded
each sample into numpy arrays (RGB as a reversed view of OpenCV's BGR), stacked them with ``np.stack``
and made the images NCHW with a ``permute().contiguous()``: two strided copies that together cost more
than the JPEG decode (relpos: 0.53 s stacking and 0.13 s permuting against 0.45 s of ``imdecode`` per
1,280 samples; profile in docs/benchmarks.md). Here:

- a colour JPEG is decoded to BGR and ``cv2.split`` writes its three planes straight into the slot's R,
  G and B planes (no reversed view, no permute);
- a crop (motion frames) is a view of the decoded image, so only the window is written;
- in a loader worker the batch is written into one of a few shared-memory batches that the worker
  reuses (:class:`BatchRing`), so handing it to the trainer's process copies no pixels and touches no
  fresh pages. A fresh shared batch per step, as ``torch.utils.data.default_collate`` allocates, costs
  about 8 ms per 8 MB relpos batch in page faults, as much as decoding 25 of its JPEGs: the ring lifted
  relpos from 1,300 to 2,400 samples/s per worker here.

Which fields there are, their batch keys, dtypes and layouts, which share the crop window and which may
stay bytes for the device: the field table (``mtssl.contract.fields``); this module names no field, and
a new field is an entry there. The result equals ``mtssl.inputs.batch_from_samples`` of the decoded,
cropped samples, value for value (the batch layout is documented there); tests hold the two side by side.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import get_worker_info

from mtssl.contract import CROPPABLE_FIELDS, DECODERS, FIELDS_BY_NAME, Field, Layout, decode_jpeg_bgr
from mtssl.data.device_decode import jpeg_size, pack

IMAGE_FIELDS = CROPPABLE_FIELDS  # the fields cropped together, in order of precedence (a view of the table)
Window = tuple[slice, slice]
WHOLE: Window = (slice(None), slice(None))


def decode_raw(raw: Mapping[str, Any], fields: Sequence[str], keep_jpeg: bool = False) -> dict[str, Any]:
    """Decode ``fields`` of one raw sample into arrays in their stored layout (colour stays BGR: the
    batch writer reorders the planes as it copies them); with ``keep_jpeg`` the JPEG fields the table lets
    the device decode stay bytes (``mtssl.data.device_decode``). ValueError when one is missing or corrupt."""
    return _decode(raw, decode_plan(fields, keep_jpeg))


DecodePlan = tuple[tuple[str, Callable[[bytes], Any] | None], ...]


def decode_plan(fields: Sequence[str], keep_jpeg: bool) -> DecodePlan:
    """(name, decoder) per field, looked up in the field table once per stream rather than per sample:
    a colour JPEG decodes to BGR, a JPEG left for the device has no decoder (None)."""
    plan = []
    for name in fields:
        field = FIELDS_BY_NAME[name][0]
        if keep_jpeg and field.device_decode:
            plan.append((name, None))
        else:
            plan.append((name, decode_jpeg_bgr if field.colour else DECODERS[name]))
    return tuple(plan)


def _decode(raw: Mapping[str, Any], plan: DecodePlan) -> dict[str, Any]:
    missing = [name for name, _ in plan if name not in raw]
    if missing:
        raise ValueError(f"sample {raw.get('__key__')!r} lacks field(s) {missing}")
    out = {}
    for name, decode in plan:
        if decode is None:
            jpeg_size(raw[name])  # a truncated or foreign payload is refused here, not on the device
            out[name] = bytes(raw[name])
        else:
            out[name] = decode(raw[name])
    return out


def image_size(decoded: Mapping[str, Any]) -> tuple[int, int]:
    """(height, width) of a sample's first croppable field, from its pixels or, still encoded, its header."""
    value = next((decoded[f] for f in CROPPABLE_FIELDS if f in decoded), None)
    if value is None:
        raise ValueError(f"no croppable field among {list(decoded)}")
    return jpeg_size(value) if isinstance(value, bytes) else value.shape[:2]


def crop_window(decoded: Mapping[str, Any], side: int | None, rng: np.random.Generator | None) -> Window:
    """The same ``side`` x ``side`` window for every image field (frames and masks stay aligned): random
    when ``rng`` is given, central when it is None (validation), the whole image when ``side`` is None.
    The draws (row, then column) are those of the earlier per-sample crop, so seeded streams are unchanged."""
    if side is None:
        return WHOLE
    height, width = image_size(decoded)
    if side > min(height, width):
        raise ValueError(f"crop {side} is larger than the stored {height}x{width} image")
    if rng is None:
        y, x = (height - side) // 2, (width - side) // 2
    else:
        y = int(rng.integers(0, height - side + 1))
        x = int(rng.integers(0, width - side + 1))
    return slice(y, y + side), slice(x, x + side)


def slot_shapes(decoded: Mapping[str, Any], window: Window) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """Batch key -> (shape of one sample's slot, dtype), from a decoded sample and its crop window."""
    shapes: dict[str, tuple[tuple[int, ...], torch.dtype]] = {}
    for name, value in decoded.items():
        if isinstance(value, bytes):  # a JPEG left for the device: no slot
            continue
        for field in FIELDS_BY_NAME[name]:
            shape = _SLOT_SHAPES[field.layout](field, value, window)
            if shape is not None:
                shapes[field.key] = (shape, getattr(torch, field.dtype))
    return shapes


def _cropped(field: Field, image: np.ndarray, window: Window) -> np.ndarray:
    return image[window] if field.croppable else image


def _image_shape(field: Field, image: np.ndarray, window: Window) -> tuple[int, ...]:
    return (field.channels, *_cropped(field, image, window).shape[:2])


_SLOT_SHAPES: dict[Layout, Callable[[Field, Any, Window], tuple[int, ...] | None]] = {
    Layout.IMAGE: _image_shape,
    Layout.ARRAY: lambda field, array, window: array.shape,
    Layout.CHANNELS_LAST: lambda field, array, window: (array.shape[2], *array.shape[:2]),
    Layout.JSON_VALUE: lambda field, params, window: () if field.key in params else None,  # only when the json has it
}


Shapes = Mapping[str, tuple[tuple[int, ...], torch.dtype]]


def empty_batch(shapes: Shapes, size: int) -> dict[str, torch.Tensor]:
    """Uninitialised batch tensors; in shared memory when called in a DataLoader worker."""
    shared = get_worker_info() is not None
    return {key: _empty((size, *shape), dtype, shared) for key, (shape, dtype) in shapes.items()}


def _empty(shape: tuple[int, ...], dtype: torch.dtype, shared: bool) -> torch.Tensor:
    if not shared:
        return torch.empty(shape, dtype=dtype)
    storage = torch.UntypedStorage._new_shared(math.prod(shape) * dtype.itemsize)  # as default_collate does
    return torch.empty(0, dtype=dtype).set_(storage, 0, shape)


def put(arrays: Mapping[str, np.ndarray], index: int, decoded: Mapping[str, Any], window: Window) -> None:
    """Write one decoded sample into slot ``index`` of a batch's numpy views (ValueError on a shape that
    differs from the batch's)."""
    _put(arrays, index, decoded, window, write_plan(tuple(decoded)))


Writer = Callable[[Mapping[str, np.ndarray], int, Field, Any, Window], None]
WritePlan = tuple[tuple[str, Field, Writer], ...]


def write_plan(fields: Sequence[str]) -> WritePlan:
    """(name, field, writer) per batch key the fields hold, looked up once per stream."""
    return tuple((name, field, _WRITERS[field.layout]) for name in fields for field in FIELDS_BY_NAME[name])


def _put(
    arrays: Mapping[str, np.ndarray], index: int, decoded: Mapping[str, Any], window: Window, plan: WritePlan
) -> None:
    for name, field, write in plan:
        value = decoded[name]
        if not isinstance(value, bytes):  # a JPEG left for the device: no slot
            write(arrays, index, field, value, window)


def _put_image(arrays: Mapping[str, np.ndarray], index: int, field: Field, image: np.ndarray, window: Window) -> None:
    image = image[window] if field.croppable else image
    if field.channels == 3:
        _put_planes(arrays[field.key][index], image)
    else:
        _copy(arrays[field.key][index, 0], image, field.name)


def _put_json_value(arrays: Mapping[str, np.ndarray], index: int, field: Field, params: dict, window: Window) -> None:
    if field.key in arrays:  # a slot only when the batch's first sample had the value
        arrays[field.key][index] = np.dtype(field.dtype).type(params[field.key])


def _put_array(arrays: Mapping[str, np.ndarray], index: int, field: Field, array: np.ndarray, window: Window) -> None:
    _copy(arrays[field.key][index], array, field.name)


def _put_channels_last(
    arrays: Mapping[str, np.ndarray], index: int, field: Field, array: np.ndarray, window: Window
) -> None:
    _copy(arrays[field.key][index], array.transpose(2, 0, 1), field.name)


_WRITERS: dict[Layout, Writer] = {
    Layout.IMAGE: _put_image,
    Layout.ARRAY: _put_array,
    Layout.CHANNELS_LAST: _put_channels_last,
    Layout.JSON_VALUE: _put_json_value,
}


def _put_planes(slot: np.ndarray, bgr: np.ndarray) -> None:
    """BGR (H, W, 3) -> the slot's RGB planes (3, H, W), written by OpenCV in place."""
    if bgr.shape != (*slot.shape[1:], 3):
        raise ValueError(f"image of shape {bgr.shape[:2]} in a batch of {slot.shape[1:]}")
    planes = cv2.split(bgr, [slot[2], slot[1], slot[0]])
    if not np.shares_memory(planes[0], slot):  # OpenCV reallocated instead of writing in place
        slot[:] = np.stack(planes[::-1])


def _copy(slot: np.ndarray, value: np.ndarray, field: str) -> None:
    if value.shape != slot.shape:
        raise ValueError(f"{field} of shape {value.shape} in a batch of {slot.shape}")
    np.copyto(slot, value, casting="unsafe")


class BatchRing:
    """The shared-memory batches one task reuses in one loader worker, and the flags that say which of
    them the trainer still holds.

    :meth:`take` returns a free slot's tensors (flag 0), the decoder fills them, :meth:`hand_over` marks
    the slot busy with the segment's ``generation``, and the bundle carries the (slot, generation)
    token; the trainer's process clears the flag once it has copied the batch (``StepStream.release``,
    after ``to_device``), and only if it still holds that generation, so a late release from an earlier
    segment frees nothing. ``flags`` is a view of a shared tensor made before the workers start. With as
    many slots as batches can be in flight (prefetched, pinned, held) the worker never waits. When no
    slot frees within ``timeout`` seconds (a consumer that keeps or drops bundles without releasing
    them), the batch goes into fresh shared memory instead, with a warning: the ring never blocks a
    stream and never overwrites a batch the trainer holds.
    """

    def __init__(self, flags: torch.Tensor, generation: int, timeout: float = 1.0) -> None:
        if generation < 1:
            raise ValueError("a ring generation is a positive segment number")
        self.flags, self.generation, self.timeout = flags, generation, timeout
        self.slots: list[tuple[dict, dict[str, torch.Tensor]] | None] = [None] * len(flags)
        self.slot, self.warned = -1, False

    def take(self, shapes: Shapes, size: int) -> dict[str, torch.Tensor]:
        """Batch tensors to fill: a free slot's (allocated on first use or when the shapes change)."""
        self.slot = self._free_slot()
        if self.slot < 0:
            return empty_batch(shapes, size)
        held = self.slots[self.slot]
        if held is None or held[0] != shapes:
            held = (dict(shapes), empty_batch(shapes, size))
            self.slots[self.slot] = held
        return held[1]

    def hand_over(self) -> tuple[int, int]:
        """Mark the batch just filled as held by the trainer; the (slot, generation) token (-1: no slot)."""
        if self.slot >= 0:
            self.flags[self.slot] = self.generation
        return self.slot, self.generation

    def _free_slot(self) -> int:
        deadline = time.monotonic() + self.timeout
        while not (free := (self.flags == 0).nonzero()).numel():
            if time.monotonic() > deadline:
                if not self.warned:
                    warnings.warn(
                        "the loader's consumer holds every ring batch without releasing it (StepStream.release "
                        "after to_device); batches go to fresh shared memory instead", stacklevel=4,
                    )  # fmt: skip
                    self.warned = True
                return -1
            time.sleep(0.0005)
        return int(free[0])


class BatchDecoder:
    """webdataset stage: raw samples -> batches of ``batch_size``, decoded in place (see the module doc).

    A sample that fails to decode, or whose shape differs from its batch's, is skipped with a warning;
    ``limit`` failures in a row stop the stream (a shard set whose samples all lack a field the run reads
    would otherwise be resampled forever). A trailing partial batch is dropped, or with ``partial`` yielded
    when it holds at least two samples (validation, where a held-out shard may hold less than a batch).
    """

    def __init__(
        self, fields: Sequence[str], batch_size: int, crop: int | None = None,
        rng: np.random.Generator | None = None, ring: BatchRing | None = None, limit: int = 100,
        keep_jpeg: bool = False, partial: bool = False,
    ) -> None:  # fmt: skip
        self.fields, self.batch_size, self.crop, self.rng, self.limit = tuple(fields), batch_size, crop, rng, limit
        self.ring, self.failures, self.keep_jpeg, self.partial = ring, 0, keep_jpeg, partial
        self.decode_plan, self.write_plan = decode_plan(self.fields, keep_jpeg), write_plan(self.fields)

    def __call__(self, src: Iterator[dict[str, Any]]) -> Iterator[dict[str, torch.Tensor]]:
        batch: dict[str, torch.Tensor] = {}
        arrays: dict[str, np.ndarray] = {}
        encoded: list[tuple[dict[str, Any], Window]] = []  # JPEGs left for the device, with their crops
        index = 0
        for raw in src:
            try:
                decoded = _decode(raw, self.decode_plan)
                window = crop_window(decoded, self.crop, self.rng)
                if index == 0:
                    batch = self._new_batch(slot_shapes(decoded, window))
                    arrays = {key: tensor.numpy() for key, tensor in batch.items()}
                    encoded = []
                _put(arrays, index, decoded, window, self.write_plan)
            except ValueError as exc:
                self._failed(raw, exc)
                continue
            self.failures = 0
            index += 1
            if self.keep_jpeg:
                encoded.append(({f: v for f, v in decoded.items() if isinstance(v, bytes)}, window))
            if index == self.batch_size:
                if self.ring:
                    self.ring.hand_over()
                yield batch | self._encoded_fields(encoded) if self.keep_jpeg else batch
                index = 0
        if self.partial and index >= 2:
            rest = {key: tensor[:index] for key, tensor in batch.items()}
            yield rest | self._encoded_fields(encoded) if self.keep_jpeg else rest

    def _encoded_fields(self, encoded: list[tuple[dict[str, Any], Window]]) -> dict[str, torch.Tensor]:
        """The batch's JPEG bytes (``k.jpeg``, ``k.jpeg_sizes``) and crops (``k.jpeg_window``)."""
        out: dict[str, torch.Tensor] = {}
        for name in encoded[0][0]:
            field = FIELDS_BY_NAME[name][0]
            key = field.key
            out[f"{key}.jpeg"], out[f"{key}.jpeg_sizes"] = pack([fields[name] for fields, _ in encoded])
            if self.crop is not None and field.croppable:
                boxes = [(y.start, x.start, y.stop - y.start, x.stop - x.start) for _, (y, x) in encoded]
                out[f"{key}.jpeg_window"] = torch.tensor(boxes, dtype=torch.int64)
        return out

    def _new_batch(self, shapes: Shapes) -> dict[str, torch.Tensor]:
        return self.ring.take(shapes, self.batch_size) if self.ring else empty_batch(shapes, self.batch_size)

    def _failed(self, raw: Mapping[str, Any], exc: ValueError) -> None:
        self.failures += 1
        if self.failures >= self.limit:
            raise RuntimeError(f"{self.limit} samples in a row failed to decode, the last: {exc}") from exc
        warnings.warn(f"skipping sample {raw.get('__key__')!r}: {exc}", stacklevel=3)
