"""The field table: every stored field a sample may hold, and how the consumer decodes and batches it.

A field is one :class:`Field` entry in :data:`FIELD_TABLE`; the loader's decoding (``mtssl.data.batching``),
the batch-key mapping (``mtssl.inputs``, ``mtssl.data.stream.fields_for``) and the device decode
(``mtssl.data.device_decode``) all read this table and name no field themselves. A new field is one
entry here, e.g. a jigsaw task's nine colour tiles side by side::

    TILES = Field("tiles.jpg", "tiles", Layout.IMAGE, "uint8", channels=3, device_decode=True)

Each entry is one batch key. A key read from the sample's ``json`` (``grayscale``) is an entry whose
``name`` is ``json`` and whose layout is ``Layout.JSON_VALUE``; the ``json`` member is decoded once however
many keys read it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from functools import partial
from typing import Any

from mtssl.contract.encoding import EXTENSION_DECODERS, decode_jpeg


class Layout(str, Enum):
    """How a decoded field becomes one sample's slot of a batch."""

    IMAGE = "image"  # (H, W) or (H, W, C) uint8 -> (C, H, W), C = channels; RGB planes for colour
    ARRAY = "array"  # stored shape kept, values cast to the batch dtype (bins: uint16 -> int64)
    CHANNELS_LAST = "channels_last"  # (h, w, c) -> (c, h, w) (ab)
    JSON_VALUE = "json_value"  # the entry named ``key`` of the sample's json, one scalar per sample


JSON_FIELD = "json"  # the member every sample has: its parameters (the build adds it)
Decoder = Callable[[bytes], Any]


@dataclass(frozen=True)
class Field:
    """One stored field and its batch key.

    ``name`` is the member's name after the sample key (``<key>.rgb.jpg``); its extension is its
    encoding. ``dtype`` is the batch's dtype as numpy and torch both spell it. ``channels``: an image's
    planes in the batch (3: a colour JPEG, written as R, G, B planes; 1: gray). ``croppable`` image fields
    share the sample's crop window (motion's frame and mask); the first croppable field of the table that a
    sample holds fixes the window's bounds. ``device_decode``: a JPEG the trainer may decode on the device
    (nvJPEG, ``--jpeg-decode device``) instead of the loader worker.
    """

    name: str
    key: str
    layout: Layout
    dtype: str
    channels: int = 1
    croppable: bool = False
    device_decode: bool = False

    def __post_init__(self) -> None:
        if self.encoding not in EXTENSION_DECODERS:
            raise ValueError(f"field {self.name!r}: no encoding for extension {self.encoding!r}")
        if not isinstance(self.layout, Layout):
            raise ValueError(f"field {self.name!r}: layout {self.layout!r} is not a Layout")
        if (self.layout is Layout.JSON_VALUE) != (self.name == JSON_FIELD):
            raise ValueError(f"field {self.name!r}: only the json member holds json values")
        if self.layout is not Layout.IMAGE and (self.croppable or self.channels != 1):
            raise ValueError(f"field {self.name!r}: only image fields are cropped or have channels")
        if self.channels not in (1, 3) or (self.channels == 3 and self.encoding != "jpg"):
            raise ValueError(f"field {self.name!r}: images have 1 channel, or 3 when stored as JPEG")
        if self.device_decode and (self.layout is not Layout.IMAGE or self.encoding != "jpg"):
            raise ValueError(f"field {self.name!r}: only JPEG images are decoded on the device")

    @property
    def encoding(self) -> str:
        """``jpg``, ``png``, ``npy`` or ``json``: the name's extension."""
        return self.name.rpartition(".")[2]

    @property
    def colour(self) -> bool:
        """A 3-channel image (decoded to RGB by the contract, BGR planes by the loader)."""
        return self.channels == 3


RGB = Field("rgb.jpg", "rgb", Layout.IMAGE, "uint8", channels=3, croppable=True, device_decode=True)
L = Field("l.jpg", "l", Layout.IMAGE, "uint8", croppable=True, device_decode=True)
MASK = Field("mask.png", "mask", Layout.IMAGE, "uint8", croppable=True)  # 0 or 255
BINS = Field("bins.png", "bins", Layout.ARRAY, "int64")  # 16-bit PNG of ab-bin indices
AB = Field("ab.npy", "ab", Layout.CHANNELS_LAST, "int8")
GRAYSCALE = Field(JSON_FIELD, "grayscale", Layout.JSON_VALUE, "bool")
TILES = Field("tiles.jpg", "tiles", Layout.IMAGE, "uint8", channels=3, device_decode=True)  # jigsaw's 3x3 tiles

FIELD_TABLE: tuple[Field, ...] = (RGB, L, MASK, BINS, AB, GRAYSCALE, TILES)  # croppable fields in order of precedence


def _decoder(field: Field) -> Decoder:
    """The contract's decoder of a field: by its encoding; a 1-channel JPEG decodes to gray."""
    if field.encoding == "jpg" and not field.colour:
        return partial(decode_jpeg, gray=True)
    return EXTENSION_DECODERS[field.encoding]


def _by_name(table: Sequence[Field]) -> dict[str, tuple[Field, ...]]:
    out: dict[str, tuple[Field, ...]] = {}
    for field in table:
        out[field.name] = (*out.get(field.name, ()), field)
    return out


def _check(table: Sequence[Field]) -> None:
    keys, names = [f.key for f in table], [f.name for f in table if f.layout is not Layout.JSON_VALUE]
    if len(set(keys)) != len(keys) or len(set(names)) != len(names):
        raise ValueError("each field has its own name and batch key (the json member excepted)")


_check(FIELD_TABLE)
# The table's indexes. Whatever looks a field up goes through these (a test adds an entry to each).
FIELDS_BY_KEY: dict[str, Field] = {field.key: field for field in FIELD_TABLE}
FIELDS_BY_NAME: dict[str, tuple[Field, ...]] = _by_name(FIELD_TABLE)  # the json member holds several keys
DECODERS: dict[str, Decoder] = {JSON_FIELD: EXTENSION_DECODERS["json"]} | {f.name: _decoder(f) for f in FIELD_TABLE}
CROPPABLE_FIELDS: tuple[str, ...] = tuple(f.name for f in FIELD_TABLE if f.croppable)  # in order of precedence


def field_names_for(keys: Sequence[str]) -> tuple[str, ...]:
    """The stored fields that hold the given batch keys, each once, in the keys' order; KeyError naming
    the keys no field holds."""
    unknown = [key for key in keys if key not in FIELDS_BY_KEY]
    if unknown:
        raise KeyError(f"no contract field holds batch key(s) {unknown}")
    return tuple(dict.fromkeys(FIELDS_BY_KEY[key].name for key in keys))


def decode_sample(sample: dict[str, Any], fields: Sequence[str]) -> dict[str, Any]:
    """Decode the raw bytes of one sample (as read from a tar) into numpy arrays (RGB or gray images) and
    dicts: the given fields (each task's recipe lists what it writes), by their encoding.

    Raises ValueError when a field is missing or fails to decode, KeyError for a name not in the table.
    Never unpickles.
    """
    out: dict[str, Any] = {"__key__": sample.get("__key__")}
    for field in fields:
        if field not in sample:
            raise ValueError(f"sample {sample.get('__key__')!r} lacks field {field!r}")
        out[field] = DECODERS[field](sample[field])
    return out
