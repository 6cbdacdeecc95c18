"""Decoding into batch slots (mtssl.data.batching) gives the batches the per-sample loader gave, and the
worker's shared batch ring is reused only once the trainer releases a batch, never overwritten."""

from __future__ import annotations

import io
import warnings
from itertools import islice
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import torch
import webdataset as wds

from mtssl.contract import (
    DECODERS,
    EXTENSION_DECODERS,
    FIELDS_BY_KEY,
    FIELDS_BY_NAME,
    Field,
    Layout,
    decode_npy,
    decode_sample,
    encode_jpeg,
    encode_npy,
    tile,
)
from mtssl.data.batching import BatchDecoder, BatchRing
from mtssl.data.device_decode import decode_on_device
from mtssl.data.shardsets import load_set
from mtssl.data.stream import (
    StepStream,
    TaskSpec,
    batches_of,
    fields_for,
    make_loader,
    tar_stage,
    task_pipeline,
    to_device,
)
from mtssl.inputs import batch_from_samples

KEYS = {"relpos": ("rgb",), "color": ("l", "bins", "ab", "grayscale"), "exemplar": ("rgb",), "motion": ("rgb", "mask")}


def spec_of(shard_root: Path, task: str, batch: int = 3) -> TaskSpec:
    crop = 64 if task == "motion" else None
    return TaskSpec(task, tuple(load_set(shard_root / task).urls), fields_for(KEYS[task]), batch, crop, buffer=8)


def per_sample_crop(sample: dict[str, Any], side: int, rng: np.random.Generator) -> dict[str, Any]:
    """The loader's crop before batching moved into the decoder: row, then column, of the first image."""
    height, width = next(sample[f].shape[:2] for f in ("rgb.jpg", "l.jpg", "mask.png") if f in sample)
    y, x = int(rng.integers(0, height - side + 1)), int(rng.integers(0, width - side + 1))
    return {
        k: v[y : y + side, x : x + side] if k.endswith((".jpg", ".png")) and k != "bins.png" else v
        for k, v in sample.items()
    }


def reference_pipeline(spec: TaskSpec, seed: int) -> wds.DataPipeline:
    """The per-sample loader: contract decoders, np.stack collation (``batch_from_samples``)."""
    shard_seed, shuffle_seed, crop_seed = (int(s) for s in np.random.SeedSequence(seed).generate_state(3))
    rng = np.random.default_rng(crop_seed)
    stages: list[Any] = [
        wds.ResampledShards(list(spec.urls), seed=shard_seed, worker_seed=lambda: 0, deterministic=True),
        tar_stage(spec.urls, spec.fields),
        wds.shuffle(spec.buffer, initial=min(spec.buffer, 100), seed=shuffle_seed),
        wds.map(lambda raw: {f: DECODERS[f](raw[f]) for f in spec.fields}),
    ]
    if spec.crop is not None:
        stages.append(wds.map(lambda s: per_sample_crop(s, spec.crop, rng)))
    stages.append(wds.batched(spec.batch_size, collation_fn=batch_from_samples, partial=False))
    return wds.DataPipeline(*stages)


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("task", list(KEYS))
def test_batches_equal_those_of_the_per_sample_loader(shard_root, task):
    spec = spec_of(shard_root, task)
    new = list(islice(iter(task_pipeline(spec, seed=5)), 4))
    old = list(islice(iter(reference_pipeline(spec, seed=5)), 4))
    assert all(same(a, b) for a, b in zip(new, old, strict=True))
    assert all(t.is_contiguous() for batch in new for t in batch.values())


def test_a_corrupt_sample_is_skipped_and_its_batch_filled_from_the_next(shard_root, tmp_path):
    import tarfile

    src = spec_of(shard_root, "relpos").urls[0]
    bad = tmp_path / "bad.tar"
    with tarfile.open(src) as tar, tarfile.open(bad, "w") as out:
        for i, member in enumerate(m for m in tar if m.name.endswith(".rgb.jpg")):
            data = tar.extractfile(member).read()
            info = tarfile.TarInfo(member.name)
            data = b"not a jpeg" if i == 1 else data
            info.size = len(data)
            out.addfile(info, io.BytesIO(data))
    spec = TaskSpec("relpos", (str(bad),), ("rgb.jpg",), 3, buffer=1)
    with pytest.warns(UserWarning, match="skipping sample .*corrupt JPEG"):
        batch = next(iter(task_pipeline(spec, seed=0)))
    assert batch["rgb"].shape == (3, 3, 96, 96)


TILES = Field("tiles.jpg", "tiles", Layout.IMAGE, "uint8", channels=3, device_decode=True)  # a jigsaw task's


@pytest.fixture
def tiles(monkeypatch: pytest.MonkeyPatch) -> Field:
    """A new field, in the table's indexes (what its one entry in ``FIELD_TABLE`` puts there)."""
    monkeypatch.setitem(FIELDS_BY_KEY, TILES.key, TILES)
    monkeypatch.setitem(FIELDS_BY_NAME, TILES.name, (TILES,))
    monkeypatch.setitem(DECODERS, TILES.name, EXTENSION_DECODERS[TILES.encoding])
    return TILES


def opencv_rgb(blobs: list[torch.Tensor], gray: bool, device: torch.device) -> list[torch.Tensor]:
    """A CPU stand-in for nvJPEG: colour JPEGs to RGB planes."""
    assert not gray
    images = [cv2.imdecode(blob.numpy(), cv2.IMREAD_COLOR)[..., ::-1].transpose(2, 0, 1) for blob in blobs]
    return [torch.from_numpy(np.ascontiguousarray(image)).to(device) for image in images]


def test_a_new_image_field_is_batched_from_its_table_entry_alone(tiles):
    rng = np.random.default_rng(0)
    raw = []
    for i in range(4):  # nine 16 x 16 colour tiles side by side
        grid = [cv2.resize(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8), (16, 16)) for _ in range(9)]
        raw.append({"__key__": f"k{i}", "tiles.jpg": encode_jpeg(tile(grid, 9)), "json": b"{}"})
    fields = fields_for((tiles.key,))
    assert fields == ("tiles.jpg",)
    [batch] = BatchDecoder(fields, 4)(iter(raw))
    assert batch["tiles"].shape == (4, 3, 16, 144)
    assert same(batch, batch_from_samples([decode_sample(r, fields) for r in raw]))
    [encoded] = BatchDecoder(fields, 4, keep_jpeg=True)(iter(raw))
    assert same(decode_on_device(encoded, torch.device("cpu"), opencv_rgb), batch)


def test_the_ring_reuses_a_slot_only_after_its_release():
    flags = torch.zeros(3, dtype=torch.int64)
    ring = BatchRing(flags, generation=2, timeout=0.05)
    shapes = {"rgb": ((3, 4, 4), torch.uint8)}
    first = ring.take(shapes, 2)
    assert ring.hand_over() == (0, 2) and flags.tolist() == [2, 0, 0]
    second = ring.take(shapes, 2)
    assert ring.hand_over() == (1, 2) and second["rgb"].data_ptr() != first["rgb"].data_ptr()
    flags[0] = 0  # the trainer released the first batch
    assert ring.take(shapes, 2)["rgb"].data_ptr() == first["rgb"].data_ptr()
    ring.hand_over()
    ring.take(shapes, 2)
    ring.hand_over()  # every slot held now
    with pytest.warns(UserWarning, match="holds every ring batch"):
        spare = ring.take(shapes, 2)
    assert ring.hand_over() == (-1, 2) and spare["rgb"].data_ptr() not in {
        first["rgb"].data_ptr(),
        second["rgb"].data_ptr(),
    }


def stream_of(specs: list[TaskSpec], seed: int) -> StepStream:
    return StepStream(specs, seed=seed, rank=0, start_step=0, segment_steps=100)


def test_a_loader_worker_hands_over_ring_batches_equal_to_the_in_process_stream(shard_root):
    specs = [spec_of(shard_root, task) for task in KEYS]
    stream = stream_of(specs, 3)
    loader = make_loader(stream, workers=1, pin_memory=False)
    got, slots = [], set()
    for bundle in islice(iter(loader), 12):  # more bundles than the ring has slots
        slots |= {tuple(token) for token in bundle["__ring__"].values()}
        got.append(to_device(bundle, torch.device("cpu")))
        stream.release(bundle)
    expected = [batches_of(b) for b in islice(iter(stream_of(specs, 3)), 12)]
    assert all(same(a[t], b[t]) for a, b in zip(got, expected, strict=True) for t in KEYS)
    used = {slot for _, _, slot, _ in slots}
    assert used <= set(range(5)) and -1 not in used  # prefetch 2 + 3 slots, reused: 12 bundles, no fresh batch
    assert int(stream.ring_flags.count_nonzero()) <= 2 * len(KEYS)  # only the prefetched bundles held


def test_bundles_kept_without_release_are_never_overwritten(shard_root):
    specs = [spec_of(shard_root, "relpos")]
    loader = make_loader(stream_of(specs, 4), workers=1, pin_memory=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the worker's warning that the ring is full
        kept = [batches_of(b) for b in islice(iter(loader), 8)]
    expected = [batches_of(b) for b in islice(iter(stream_of(specs, 4)), 8)]
    assert all(same(a["relpos"], b["relpos"]) for a, b in zip(kept, expected, strict=True))


@pytest.mark.parametrize(
    "array",
    [np.arange(64 * 64 * 2, dtype=np.int8).reshape(64, 64, 2), np.ones((2, 3), np.uint16), np.zeros((0, 4), np.float32),
     np.asfortranarray(np.arange(12.0).reshape(3, 4)), np.array(["a", "b"])],
)  # fmt: skip
def test_npy_fields_decode_as_np_load_decodes_them(array):
    data = encode_npy(array)
    got, expected = decode_npy(data), np.load(io.BytesIO(data), allow_pickle=False)
    assert got.dtype == expected.dtype and got.shape == expected.shape and np.array_equal(got, expected)
    assert got.flags.writeable
    with pytest.raises(ValueError):
        decode_npy(data[:-3] if array.size else data + b"xyz")
