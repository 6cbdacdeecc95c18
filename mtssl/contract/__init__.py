"""The shard contract: the one module that the producer (`pipelines/`) and the consumer (`mtssl/`) share.

It fixes file names, sample fields and their encodings, the Lab convention and the schema version.
It imports neither torch nor ray, so both halves (and Ray workers) can import it cheaply.

Sample layout: every member of a sample shares the key (the file name up to its first dot), and a
member's extension fixes its encoding (``EXTENSION_DECODERS``): ``.jpg`` 8-bit JPEG (RGB or gray), ``.png``
8- or 16-bit PNG, ``.npy`` a numpy array (never pickled), ``json`` the sample's parameters. Every field is
one entry of the field table (``fields``: :data:`FIELD_TABLE`, :class:`Field`): its name, encoding, batch
key, batch dtype and layout, whether it shares the crop window and may be decoded on the device; the
consumer's decoding and batching read that table (:data:`DECODERS` is its decoders by name). Which fields a
task writes, and what they hold, its recipe declares (``pipelines/recipes/<task>.py``: ``RECIPE.fields`` and the
module docstring); its consumer task reads them (``mtssl/tasks/<task>.py``: ``FIELDS``). The constants both
halves of a task share (relative-position labels, the ab bins) are here.

The RGB tasks store colour only: their harmonized (L) input is a per-pixel conversion on the device
(``mtssl.inputs.rgb_to_l8``). Colorization stores its L, which must match its ab target exactly.

Lab convention (OpenCV's 8-bit conversion of sRGB, D65): ``L8 = round(L * 255 / 100)`` stored as uint8;
``a`` and ``b`` stored as int8 real values (OpenCV's uint8 value minus 128).

The contract is this package, imported as one module (``from mtssl.contract import ...``): ``names``,
``encoding``, ``fields`` (the field table; its entries as ``from mtssl.contract import fields``,
``fields.RGB``), ``manifest``, ``tar``, ``atomic``, ``locations`` (folders and bucket URLs, imported as
``from mtssl.contract import locations``), ``locks`` (one writer per folder: ``with hold(out): ...``) and
``frames`` (motion sequences with ground truth, and J, read alike by ``score-motion`` and ``mtssl-eval motion``;
imported as ``from mtssl.contract import frames``) hold its parts.
"""

from __future__ import annotations

from mtssl.contract import fields
from mtssl.contract.atomic import (
    HOST,
    finish,
    fsync_dir,
    json_record,
    process_alive,
    remove_stale_tmp,
    tmp_path,
    write_bytes_atomic,
    write_json_atomic,
)
from mtssl.contract.encoding import (
    EXTENSION_DECODERS,
    decode_jpeg,
    decode_jpeg_bgr,
    decode_json,
    decode_npy,
    decode_png,
    encode_jpeg,
    encode_json,
    encode_npy,
    encode_png,
    tile,
    untile,
)
from mtssl.contract.fields import (
    CROPPABLE_FIELDS,
    DECODERS,
    FIELD_TABLE,
    FIELDS_BY_KEY,
    FIELDS_BY_NAME,
    JSON_FIELD,
    Field,
    Layout,
    decode_sample,
    field_names_for,
)
from mtssl.contract.locks import LockHeld, hold
from mtssl.contract.manifest import REQUIRED_KEYS, Manifest, ShardEntry, parse_manifest
from mtssl.contract.names import (
    COLOR_TARGET_STRIDE,
    INDEX_FILE,
    LOCK_FILE,
    MANIFEST_FILE,
    NUM_AB_BINS,
    PARTS_DIR,
    PLAN_FILE,
    READABLE_SCHEMA_VERSIONS,
    REJECTS_FILE,
    RELPOS_CENTRE,
    RELPOS_GRID,
    RELPOS_LABELS,
    SCHEMA_VERSION,
    ShardSetError,
    ab_bins,
    config_hash,
    md5_file,
    sample_key,
    shard_name,
    stats_name,
)
from mtssl.contract.tar import tar_members_of, tar_samples_of

__all__ = [
    "COLOR_TARGET_STRIDE",
    "INDEX_FILE",
    "LOCK_FILE",
    "MANIFEST_FILE",
    "NUM_AB_BINS",
    "PARTS_DIR",
    "PLAN_FILE",
    "READABLE_SCHEMA_VERSIONS",
    "REJECTS_FILE",
    "RELPOS_CENTRE",
    "RELPOS_GRID",
    "RELPOS_LABELS",
    "SCHEMA_VERSION",
    "ShardSetError",
    "ab_bins",
    "config_hash",
    "md5_file",
    "sample_key",
    "shard_name",
    "stats_name",
    "EXTENSION_DECODERS",
    "decode_jpeg",
    "decode_jpeg_bgr",
    "decode_json",
    "decode_npy",
    "decode_png",
    "encode_jpeg",
    "encode_json",
    "encode_npy",
    "encode_png",
    "tile",
    "untile",
    "CROPPABLE_FIELDS",
    "DECODERS",
    "FIELD_TABLE",
    "FIELDS_BY_KEY",
    "FIELDS_BY_NAME",
    "JSON_FIELD",
    "Field",
    "Layout",
    "decode_sample",
    "field_names_for",
    "fields",
    "Manifest",
    "REQUIRED_KEYS",
    "ShardEntry",
    "parse_manifest",
    "tar_members_of",
    "tar_samples_of",
    "HOST",
    "finish",
    "fsync_dir",
    "json_record",
    "process_alive",
    "remove_stale_tmp",
    "tmp_path",
    "write_bytes_atomic",
    "write_json_atomic",
    "LockHeld",
    "hold",
]
