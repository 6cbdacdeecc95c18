"""Readers users already have read our sets, as ``docs/shard-format.md`` shows them: webdataset with a pipe URL
(curl signing for S3) and with an fsspec opener, Ray Data's ``read_webdataset`` from the bucket, and ``wids``
from a local set's manifest. The bucket is the local S3 server of ``tests/s3kit.py``."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from mtssl.contract import MANIFEST_FILE, decode_sample, tar_samples_of

pytest.importorskip("s3fs")
pytestmark = pytest.mark.slow  # a local S3 server

BUCKET = "mtssl-readers"
FIELDS = ("rgb.jpg", "json")  # the relpos set's


@pytest.fixture(scope="module")
def relpos_set(shard_root: Path) -> Path:
    return shard_root / "relpos"


@pytest.fixture(scope="module")
def bucket_set(s3_server, relpos_set: Path) -> str:
    s3_server.mkdir(BUCKET)
    for path in sorted(relpos_set.iterdir()):
        if path.is_file():
            s3_server.put_file(str(path), f"{BUCKET}/relpos/{path.name}")
    s3_server.invalidate_cache()
    return f"s3://{BUCKET}/relpos"


def expected_samples(relpos_set: Path) -> dict[str, bytes]:
    """key -> the stored JPEG bytes, read with our own tar reader."""
    manifest = json.loads((relpos_set / MANIFEST_FILE).read_text())
    out = {}
    for entry in manifest["shardlist"]:
        for sample in tar_samples_of((relpos_set / entry["url"]).read_bytes(), entry["url"]):
            out[sample["__key__"]] = sample["rgb.jpg"]
    return out


def shard_names(relpos_set: Path) -> list[str]:
    return [s["url"] for s in json.loads((relpos_set / MANIFEST_FILE).read_text())["shardlist"]]


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
def test_webdataset_reads_the_bucket_through_a_pipe_url(bucket_set, relpos_set):
    import webdataset as wds

    endpoint = os.environ["AWS_ENDPOINT_URL"]
    sign = '--aws-sigv4 "aws:amz:us-east-1:s3" --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY"'
    urls = [f"pipe:curl -sf {sign} {endpoint}/{BUCKET}/relpos/{name}" for name in shard_names(relpos_set)]
    got = {s["__key__"]: s["rgb.jpg"] for s in wds.WebDataset(urls, shardshuffle=False)}
    assert got == expected_samples(relpos_set)


def test_webdataset_reads_the_bucket_through_fsspec(bucket_set, relpos_set, monkeypatch):
    import fsspec
    import webdataset as wds
    from webdataset.gopen import gopen_schemes

    monkeypatch.setitem(gopen_schemes, "s3", lambda url, mode="rb", bufsize=8192, **kw: fsspec.open(url, mode).open())
    urls = [f"{bucket_set}/{name}" for name in shard_names(relpos_set)]
    samples = list(wds.WebDataset(urls, shardshuffle=False))
    assert {s["__key__"]: s["rgb.jpg"] for s in samples} == expected_samples(relpos_set)
    decoded = decode_sample(samples[0], FIELDS)  # our decoder: numpy arrays and dicts, never unpickles
    assert decoded["rgb.jpg"].ndim == 3 and "positions" in decoded["json"]


@pytest.mark.ray
def test_ray_data_reads_the_bucket(ray_session, bucket_set, relpos_set):
    import pyarrow.fs
    import ray.data

    endpoint = os.environ["AWS_ENDPOINT_URL"]
    fs = pyarrow.fs.S3FileSystem(
        endpoint_override=endpoint.split("://", 1)[1], scheme="http", region="us-east-1",
        access_key=os.environ["AWS_ACCESS_KEY_ID"], secret_key=os.environ["AWS_SECRET_ACCESS_KEY"],
    )  # fmt: skip
    paths = [f"{BUCKET}/relpos/{name}" for name in shard_names(relpos_set)]
    rows = ray.data.read_webdataset(paths, filesystem=fs, decoder=None).take_all()
    assert {r["__key__"]: r["rgb.jpg"] for r in rows} == expected_samples(relpos_set)
    decoded = ray.data.read_webdataset(paths, filesystem=fs).take(1)[0]  # Ray's own (safe) decoders
    assert decoded["rgb.jpg"].ndim == 3


def test_wids_reads_a_local_set_from_its_manifest(relpos_set, tmp_path):
    wids = pytest.importorskip("wids")

    manifest = str(relpos_set / MANIFEST_FILE)  # no decoding by wids: the bytes, for our decoder
    dataset = wids.ShardListDataset(manifest, transformations=[], cache_dir=str(tmp_path / "wids"))
    expected = expected_samples(relpos_set)
    assert len(dataset) == len(expected)
    for index in (len(dataset) - 1, 0):  # random access by index: the last sample of the last shard, the first
        sample = dataset[index]
        assert sample[".rgb.jpg"].read() == expected[sample["__key__"]]
