"""Training from shard sets in an S3 bucket, against a real local S3 server (moto's standalone HTTP server,
talked to by s3fs over HTTP: no patching of the client)."""

from __future__ import annotations

import dataclasses
from itertools import islice
from pathlib import Path

import pytest

from mtssl.tasks import TASKS

s3fs = pytest.importorskip("s3fs")
pytest.importorskip("moto")

from mtssl.data.shardsets import ShardSetError, open_sets  # noqa: E402
from mtssl.data.stream import StepStream, TaskSpec, batches_of, fields_for, make_loader  # noqa: E402

pytestmark = pytest.mark.slow  # starts a local S3 server

KEYS = {name: task.keys("harmonized") for name, task in TASKS.items()}  # batch keys each task reads
BUCKET = "mtssl-test"


@pytest.fixture(scope="module")
def bucket_shards(s3_server, shard_root: Path) -> str:
    """The session's tiny shard sets, uploaded to s3://mtssl-test/shards/."""
    s3_server.mkdir(BUCKET)
    for path in sorted(shard_root.rglob("*")):
        if path.is_file() and "parts" not in path.parts:
            s3_server.put_file(str(path), f"{BUCKET}/shards/{path.relative_to(shard_root).as_posix()}")
    s3_server.invalidate_cache()
    return f"s3://{BUCKET}/shards"


def specs_of(sets) -> list[TaskSpec]:
    out = []
    for task, sset in sets.items():
        md5 = sset.md5_by_url()
        crop = 64 if task == "motion" else None
        spec = TaskSpec(task, tuple(sset.urls), fields_for(KEYS[task]), 3, crop, 8, tuple(md5[u] for u in sset.urls))
        out.append(spec)
    return out


def test_sets_in_a_bucket_are_found_checked_and_streamed_like_local_ones(bucket_shards, shard_root):
    remote, here = open_sets(bucket_shards, TASKS), open_sets(shard_root, TASKS)
    assert list(remote) == list(here) == list(KEYS)
    assert all(url.startswith(f"s3://{BUCKET}/shards/") for sset in remote.values() for url in sset.urls)
    assert {t: s.manifest_hash for t, s in remote.items()} == {t: s.manifest_hash for t, s in here.items()}
    got = [batches_of(b) for b in islice(iter(StepStream(specs_of(remote), 0, 0, 0, 10)), 3)]
    expected = [batches_of(b) for b in islice(iter(StepStream(specs_of(here), 0, 0, 0, 10)), 3)]
    assert all(
        (a[t][k] == b[t][k]).all() for a, b in zip(got, expected, strict=True) for t in KEYS for k in a[t]
    )  # the same resampled order and the same bytes, shard for shard


def test_a_loader_worker_streams_from_the_bucket(bucket_shards):
    stream = StepStream(specs_of(open_sets(bucket_shards, TASKS, ["relpos", "color"])), 0, 0, 0, 10)
    bundles = list(islice(iter(make_loader(stream, workers=1, pin_memory=False)), 3))
    assert [tuple(b["relpos"]["rgb"].shape) for b in bundles] == [(3, 3, 96, 96)] * 3
    assert all(sum(b["__health__"]["bad"].values()) == 0 for b in bundles)


def test_training_runs_from_the_bucket(bucket_shards, tiny_config):
    from mtssl.train.loop import train

    record = train(tiny_config(shards=bucket_shards, steps=3, save_every=3))
    assert record["step"] == 3


def test_an_unreadable_object_is_skipped_and_counted(s3_server, bucket_shards):
    sets = open_sets(bucket_shards, TASKS, ["relpos"])
    urls = sets["relpos"].urls
    spec = TaskSpec("relpos", (*urls, urls[0] + ".gone"), fields_for(KEYS["relpos"]), 3, buffer=8, max_bad_fraction=1.0)
    with pytest.warns(UserWarning, match="does not exist"):
        stream = iter(StepStream([spec], 0, 0, 0, 10))
        bundles = list(islice(stream, 12))
    assert bundles[-1]["__health__"]["bad"].get("relpos", 0) >= 1


@pytest.mark.parametrize(
    "url,message",
    [(f"s3://{BUCKET}/nothing-here", "is not a folder"), ("s3://no-such-bucket-mtssl/shards", "is not a folder")],
)
def test_a_missing_prefix_or_bucket_is_one_clear_error(s3_server, url, message):
    with pytest.raises(ShardSetError, match=message):
        open_sets(url, TASKS)


def test_a_cache_folder_keeps_each_object_read_and_later_reads_use_it(s3_server, bucket_shards, tmp_path):
    s3_server.copy(f"{BUCKET}/shards/relpos", f"{BUCKET}/cache-test/relpos", recursive=True)  # its own, to delete
    sets = open_sets(f"s3://{BUCKET}/cache-test", TASKS, ["relpos"])
    cache = tmp_path / "cache"
    spec = dataclasses.replace(specs_of(sets)[0], cache_dir=str(cache))
    first = [batches_of(b) for b in islice(iter(StepStream([spec], 0, 0, 0, 10)), 3)]
    copies = sorted(p.name for p in cache.iterdir())
    md5 = sets["relpos"].md5_by_url()
    assert copies and all(name.split("-", 1)[0] in md5.values() for name in copies)  # named by the manifest's md5
    for url in sets["relpos"].urls:  # the bucket loses its objects: the cached copies still serve them
        s3_server.rm(url[len("s3://") :])
    again = [batches_of(b) for b in islice(iter(StepStream([spec], 0, 0, 0, 10)), 3)]
    assert all((a["relpos"][k] == b["relpos"][k]).all() for a, b in zip(first, again, strict=True) for k in a["relpos"])


def test_a_damaged_cached_copy_is_skipped_counted_and_fetched_again(s3_server, bucket_shards, tmp_path):
    s3_server.copy(f"{BUCKET}/shards/relpos", f"{BUCKET}/cache-damage/relpos", recursive=True)
    sets = open_sets(f"s3://{BUCKET}/cache-damage", TASKS, ["relpos"])
    cache = tmp_path / "cache"
    spec = dataclasses.replace(specs_of(sets)[0], cache_dir=str(cache), max_bad_fraction=1.0)  # skip, count
    list(islice(iter(StepStream([spec], 0, 0, 0, 10)), 2))  # fills the cache
    copy = sorted(cache.iterdir())[0]
    data = bytearray(copy.read_bytes())
    data[len(data) // 2] ^= 0xFF
    copy.write_bytes(bytes(data))
    with pytest.warns(UserWarning, match="md5 differs"):
        bundles = list(islice(iter(StepStream([spec], 0, 0, 0, 10)), 12))
    assert bundles[-1]["__health__"]["bad"].get("relpos", 0) >= 1  # skipped and counted, never trained on
    assert copy.read_bytes() == s3_server.cat_file(f"{BUCKET}/cache-damage/relpos/{copy.name.split('-', 1)[1]}")
