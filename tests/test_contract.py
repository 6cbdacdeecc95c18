"""The shard contract both halves import: the key rule, never-pickled fields, one tar layout read alike by
the standard library, webdataset and the consumer's own reader, and no heavy imports."""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

from mtssl.contract import (
    DECODERS,
    EXTENSION_DECODERS,
    FIELD_TABLE,
    JSON_FIELD,
    Field,
    Layout,
    decode_npy,
    decode_sample,
    encode_npy,
    encode_png,
    field_names_for,
    sample_key,
    tar_members_of,
    tar_samples_of,
)
from pipelines.tarwriter import ShardWriter

SAMPLES = {
    sample_key("n01/a.JPEG"): {"rgb.jpg": b"\xff\xd8jpeg", "json": b'{"a":1}'},
    sample_key("n01/" + "long" * 40 + ".JPEG"): {"mask.png": encode_png(np.zeros((4, 4), np.uint8)), "json": b"{}"},
}


def test_keys_are_dot_free_readable_and_distinct_for_paths_that_sanitize_alike():
    a, b = sample_key("n01/x y.jpg"), sample_key("n01/x_y.jpg")
    assert "." not in a and a.startswith("n01_x_y_jpg-") and a != b
    assert sample_key("n01/x y.jpg") == a  # a pure function of the path
    assert sample_key("clip.mp4", "_f000010").endswith("_f000010")


def test_npy_fields_are_never_unpickled():
    assert decode_npy(encode_npy(np.arange(6, dtype=np.int8).reshape(2, 3))).tolist() == [[0, 1, 2], [3, 4, 5]]
    buffer = io.BytesIO()
    np.save(buffer, np.array([{"evil": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError):
        decode_npy(buffer.getvalue())


def test_every_field_extension_has_a_decoder_and_a_missing_field_is_an_error():
    assert {"rgb.jpg", "l.jpg", "bins.png", "mask.png", "ab.npy", "json"} <= set(DECODERS)
    assert set(DECODERS) == {f.name for f in FIELD_TABLE} | {JSON_FIELD}
    assert {f.encoding for f in FIELD_TABLE} <= set(EXTENSION_DECODERS)
    with pytest.raises(ValueError, match="lacks field 'mask.png'"):
        decode_sample({"__key__": "k", "json": b"{}"}, ("mask.png", "json"))


def test_the_docs_describe_the_field_table():
    text = (Path(__file__).resolve().parents[1] / "docs" / "shard-format.md").read_text()
    section = text.split("### The field table\n", 1)[1].split("\n### ", 1)[0]
    rows = [[c.strip().strip("`") for c in line.strip("|").split("|")] for line in section.splitlines()]
    yes = {True: "yes", False: "no"}
    expected = [
        [f.name, f.encoding, f.key, f.layout.value, f.dtype, str(f.channels), yes[f.croppable], yes[f.device_decode]]
        for f in FIELD_TABLE
    ]
    assert [row for row in rows if row[0] in DECODERS] == expected


def test_recipes_write_and_tasks_read_fields_of_the_table():
    from mtssl.tasks import TASKS
    from pipelines.recipes import RECIPES

    for task, recipe in RECIPES.items():
        assert set(recipe.fields) <= {f.name for f in FIELD_TABLE} - {JSON_FIELD}, task  # the build adds json
        for mode, keys in TASKS[task].FIELDS.items():
            assert set(field_names_for(keys)) <= {*recipe.fields, JSON_FIELD}, (task, mode)


@pytest.mark.parametrize(
    "bad",
    [{"name": "x.gif"}, {"name": "x.png", "channels": 3}, {"name": "x.png", "device_decode": True},
     {"layout": Layout.ARRAY, "croppable": True}, {"name": "json"}, {"layout": "image"}],
)  # fmt: skip
def test_a_field_entry_that_the_loader_could_not_batch_is_refused(bad):
    Field("tiles.jpg", "tiles", Layout.IMAGE, "uint8", channels=3, device_decode=True)  # a jigsaw task's: fine
    with pytest.raises(ValueError):
        Field(**{"name": "x.jpg", "key": "x", "layout": Layout.IMAGE, "dtype": "uint8"} | bad)


@pytest.fixture
def shard(tmp_path):
    path = tmp_path / "task-000000.tar"
    with open(path, "wb") as stream, ShardWriter(stream, mtime=946684800) as writer:
        for key, fields in SAMPLES.items():
            writer.write(key, fields)
    return path


def test_the_standard_library_webdataset_and_the_consumer_read_the_same_members(shard):
    expected = [(k, f, d) for k, fields in SAMPLES.items() for f, d in sorted(fields.items())]
    with tarfile.open(shard) as tar:
        plain = [(*m.name.split(".", 1), tar.extractfile(m).read()) for m in tar]
    assert plain == expected
    data = shard.read_bytes()
    assert list(tar_members_of(data, str(shard))) == expected
    assert list(tar_members_of(data, str(shard), {"json"})) == [m for m in expected if m[1] == "json"]
    assert [{k: v for k, v in s.items() if k != "__key__"} for s in tar_samples_of(data, "x")] == list(SAMPLES.values())
    import webdataset as wds

    samples = list(wds.WebDataset(str(shard), shardshuffle=False))
    assert [s["__key__"] for s in samples] == list(SAMPLES)
    assert all(s[f] == d for s in samples for f, d in SAMPLES[s["__key__"]].items())


def test_the_contract_imports_neither_torch_nor_ray():
    code = "import mtssl.contract, sys; print(sorted(m for m in ('torch', 'ray', 'webdataset') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_a_damaged_or_cut_shard_is_a_value_error_naming_where(shard):
    with pytest.raises(ValueError, match="member at byte 1024 runs past the end"):  # cut in the 2nd payload
        list(tar_members_of(shard.read_bytes()[:1600], "cut.tar"))
    header = bytearray(shard.read_bytes())
    header[10] ^= 0x01  # a flipped bit in the first header's name
    with pytest.raises(ValueError, match=r"cut.tar: damaged tar header at byte 0"):
        list(tar_members_of(bytes(header), "cut.tar"))
