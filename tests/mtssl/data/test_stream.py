"""Per-task webdataset streams: decoded fields, shapes, crops, seeding per rank/worker/segment, no pickle."""

from __future__ import annotations

import io
import pickle
import tarfile
from itertools import islice
from pathlib import Path

import pytest
import torch

from mtssl.data.shardsets import load_set
from mtssl.data.stream import (
    StepStream,
    TaskSpec,
    batches_of,
    fields_for,
    make_loader,
    stream_seed,
    task_pipeline,
)
from mtssl.tasks import TASKS

KEYS = {"relpos": ("rgb",), "color": ("l", "bins", "ab", "grayscale"), "exemplar": ("rgb",), "motion": ("rgb", "mask")}


@pytest.fixture(scope="module")
def specs(shard_root: Path) -> list[TaskSpec]:
    out = []
    for task, keys in KEYS.items():
        crop = 64 if task == "motion" else None
        out.append(TaskSpec(task, tuple(load_set(shard_root / task).urls), fields_for(keys), 3, crop, buffer=8))
    return out


def first_bundles(stream: StepStream, count: int = 3) -> list[dict]:
    """The first bundles' batches (the shard-health entry each one carries set aside)."""
    return [batches_of(b) for b in islice(iter(stream), count)]


def test_fields_follow_the_batch_keys():
    assert fields_for(("l",)) == ("l.jpg",)
    assert fields_for(("l", "bins", "ab", "grayscale")) == ("l.jpg", "bins.png", "ab.npy", "json")
    assert fields_for(("rgb", "mask")) == ("rgb.jpg", "mask.png")
    with pytest.raises(KeyError):
        fields_for(("depth",))


def test_a_bundle_holds_one_uint8_batch_per_task_with_only_the_read_keys(specs):
    bundle = first_bundles(StepStream(specs, seed=0, rank=0, start_step=0, segment_steps=10), 1)[0]
    assert set(bundle) == set(KEYS)
    assert {k: tuple(v.shape) for k, v in bundle["relpos"].items()} == {"rgb": (3, 3, 96, 96)}
    assert {k: tuple(v.shape) for k, v in bundle["exemplar"].items()} == {"rgb": (3, 3, 32, 128)}
    assert bundle["color"]["bins"].dtype == torch.int64 and bundle["color"]["ab"].dtype == torch.int8
    assert bundle["color"]["grayscale"].dtype == torch.bool
    assert {k: tuple(v.shape) for k, v in bundle["motion"].items()} == {"rgb": (3, 3, 64, 64), "mask": (3, 1, 64, 64)}
    assert bundle["relpos"]["rgb"].dtype == torch.uint8 and set(bundle["motion"]["mask"].unique().tolist()) <= {0, 255}


def equal(a: list[dict], b: list[dict]) -> bool:
    return all(torch.equal(x[t][k], y[t][k]) for x, y in zip(a, b, strict=True) for t in x for k in x[t])


def test_streams_are_a_function_of_seed_rank_and_segment_start(specs):
    def run(**kw):
        args = {"seed": 0, "rank": 0, "start_step": 0, "segment_steps": 10, **kw}
        return first_bundles(StepStream(specs, **args))

    assert equal(run(), run())
    assert not equal(run(), run(rank=1))
    assert not equal(run(), run(seed=1))
    assert not equal(run(), run(start_step=10))
    assert stream_seed(0, "relpos", 0, 0, 0) != stream_seed(0, "relpos", 0, 1, 0)  # workers differ too


def test_a_task_stream_seed_does_not_depend_on_the_registry_order():
    before = {task: stream_seed(0, task, 0, 0, 0) for task in TASKS}
    assert len(set(before.values())) == len(TASKS)
    order = dict(TASKS)
    try:
        TASKS.clear()
        TASKS.update({"newcomer": order["rotation"], **order})  # a task registered in front of all others
        assert {task: stream_seed(0, task, 0, 0, 0) for task in order} == before
    finally:
        TASKS.clear()
        TASKS.update(order)


def test_each_iter_starts_the_next_segment(specs):
    stream = StepStream(specs, seed=0, rank=0, start_step=7, segment_steps=5)
    assert [stream.segment_start(k) for k in range(3)] == [7, 10, 15]
    first, second = first_bundles(stream), first_bundles(stream)
    assert equal(second, first_bundles(StepStream(specs, seed=0, rank=0, start_step=10, segment_steps=5)))
    assert not equal(first, second)


def test_loader_workers_restart_their_streams_each_segment(specs):
    """Persistent workers: the second iter() of one loader equals a fresh loader started there."""
    loader = make_loader(StepStream(specs, seed=0, rank=0, start_step=0, segment_steps=4), workers=2, pin_memory=False)
    list(islice(iter(loader), 2))
    again = [batches_of(b) for b in islice(iter(loader), 4)]
    fresh = make_loader(StepStream(specs, seed=0, rank=0, start_step=4, segment_steps=4), workers=2, pin_memory=False)
    assert equal(again, [batches_of(b) for b in islice(iter(fresh), 4)])


class Boom:
    def __reduce__(self):
        return (exec, ("raise RuntimeError('unpickled!')",))


def test_the_stream_never_unpickles(tmp_path, specs):
    """A shard member that webdataset's default decoders would unpickle is neither read nor decoded."""
    relpos = next(s for s in specs if s.task == "relpos")
    evil = tmp_path / "evil.tar"
    with tarfile.open(relpos.urls[0]) as src, tarfile.open(evil, "w") as dst:
        for member in src:
            dst.addfile(member, src.extractfile(member))
            if member.name.endswith(".json"):
                key = member.name.split(".", 1)[0]
                data = pickle.dumps(Boom())
                info = tarfile.TarInfo(f"{key}.pyd")
                info.size = len(data)
                dst.addfile(info, io.BytesIO(data))
    spec = TaskSpec("relpos", (str(evil),), ("rgb.jpg", "json"), 2, buffer=4)
    batch = next(iter(task_pipeline(spec, seed=0)))
    assert batch["rgb"].shape == (2, 3, 96, 96)


def test_the_lean_tar_reader_reads_what_tarfile_reads(shard_root, tmp_path):
    """Including a pax long name, a sub-folder and skipped fields; a non-tar fails loudly."""
    from mtssl.data.stream import tar_members

    shard = tmp_path / "mixed.tar"
    long_key = "d/" + "k" * 120
    with tarfile.open(next((shard_root / "color").glob("*.tar"))) as src, tarfile.open(shard, "w") as dst:
        for member in src:
            dst.addfile(member, src.extractfile(member))
        for name, data in ((f"{long_key}.l.jpg", b"jpeg"), (f"{long_key}.json", b"{}")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            dst.addfile(info, io.BytesIO(data))
    with tarfile.open(shard) as tar:
        expected = [
            (m.name.split(".", 1)[0], m.name.split(".", 1)[1], tar.extractfile(m).read())
            for m in tar
            if m.name.split(".", 1)[1] in ("l.jpg", "json")
        ]
    got = list(tar_members(str(shard), {"l.jpg", "json"}))
    assert got == expected and got[-1][0] == long_key and len(got) == 2 * 4 + 2
    (tmp_path / "junk.tar").write_bytes(b"x" * 2048)
    with pytest.raises(ValueError, match="damaged tar header"):
        list(tar_members(str(tmp_path / "junk.tar"), {"json"}))


def _damage_second_header(shard: Path, out: Path, byte: int, value: int) -> Path:
    """A copy of ``shard`` with one byte of its second member's header replaced."""
    with tarfile.open(shard) as tar:
        second = tar.getmembers()[1].offset
    data = bytearray(shard.read_bytes())
    data[second + byte] = value
    out.write_bytes(bytes(data))
    return out


@pytest.mark.parametrize("byte,value", [(3, 0xFF), (3, ord("z")), (130, ord("7"))])  # non-UTF-8 name, name, size
def test_a_damaged_tar_header_is_an_error_naming_the_shard_not_a_crash(shard_root, tmp_path, byte, value):
    from mtssl.data.stream import _local_tar_samples, tar_members

    shard = next((shard_root / "color").glob("*.tar"))
    bad = _damage_second_header(shard, tmp_path / "bad.tar", byte, value)
    with pytest.raises(ValueError, match=r"bad\.tar: damaged tar header at byte"):
        list(tar_members(str(bad), {"l.jpg", "json"}))
    with pytest.warns(UserWarning, match="skipping the rest of a shard"):
        samples = list(_local_tar_samples(iter([{"url": str(bad)}, {"url": str(shard)}]), ["json"]))
    assert [s["__url__"] for s in samples] == [str(shard)] * 4  # the damaged shard gives nothing, the next all


def test_a_stream_whose_samples_all_lack_a_field_stops_with_an_error(specs):
    """Without the stop, resampled shards whose samples never decode would loop forever."""
    relpos = next(s for s in specs if s.task == "relpos")
    spec = TaskSpec("relpos", relpos.urls, ("rgb.jpg", "bins.png"), 2, buffer=4)
    with pytest.warns(UserWarning, match="lacks field"), pytest.raises(RuntimeError, match="in a row failed"):
        next(iter(task_pipeline(spec, seed=0)))
