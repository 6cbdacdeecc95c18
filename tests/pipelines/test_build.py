"""End-to-end builds on the embedded sample: Ray and in-process, determinism, reading back, resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from mtssl.contract import MANIFEST_FILE, PARTS_DIR, SCHEMA_VERSION, decode_sample
from pipelines.build import build as build_set
from pipelines.plan import PlanMismatch
from pipelines.recipes import RECIPES

TASKS = ("relpos", "color", "exemplar")


def build(task: str, images: Path, out: Path, workers: int = 0, **options) -> dict:
    options.setdefault("samples_per_shard", 8)
    config = options.pop("config", RECIPES[task].config_type())
    return build_set(task, images, out, config, workers=workers, show_progress=False, **options).manifest


def shard_bytes(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.glob("*.tar"))}


@pytest.fixture(scope="module")
def local_builds(sample_images, tmp_path_factory) -> dict[str, Path]:
    """Every image task built in-process from the sample (the reference for the other tests)."""
    root = tmp_path_factory.mktemp("local")
    for task in TASKS:
        build(task, sample_images, root / task)
    return {task: root / task for task in TASKS}


@pytest.mark.ray
@pytest.mark.parametrize("task", TASKS)
def test_two_ray_workers_build_the_same_bytes_as_one_process(ray_session, sample_images, local_builds, tmp_path, task):
    manifest = build(task, sample_images, tmp_path / task, workers=2)
    assert shard_bytes(tmp_path / task) == shard_bytes(local_builds[task])
    assert (tmp_path / task / MANIFEST_FILE).read_bytes() == (local_builds[task] / MANIFEST_FILE).read_bytes()
    assert manifest["totals"]["samples"] + manifest["totals"]["rejected"] == 45


@pytest.mark.parametrize("task", TASKS)
def test_manifest_index_and_rejects(local_builds, task):
    out = local_builds[task]
    manifest = json.loads((out / MANIFEST_FILE).read_text())
    assert manifest["task"] == task and manifest["schema_version"] == SCHEMA_VERSION
    assert manifest["__kind__"] == "wids-shard-index-v1"
    assert len(manifest["shardlist"]) == manifest["totals"]["shards"] == 6  # 45 inputs, 8 per shard
    for entry in manifest["shardlist"]:
        assert set(entry) == {"url", "nsamples", "filesize", "md5sum"}
        assert (out / entry["url"]).stat().st_size == entry["filesize"]
    index = pq.read_table(out / "index.parquet").to_pylist()
    assert len(index) == manifest["totals"]["samples"] == sum(e["nsamples"] for e in manifest["shardlist"])
    assert len({row["key"] for row in index}) == len(index)
    assert {row["label"] for row in index} >= {"astronaut", "coffee", "moon"}
    assert manifest["config"]["recipe"] == json.loads(json.dumps(vars(RECIPES[task].config_type())))
    assert manifest["versions"]["numpy"] and manifest["source"]["inputs"] == 45
    if task == "color":
        assert len(manifest["ab_prior"]) == 313 and abs(sum(manifest["ab_prior"]) - 1) < 1e-6
        grayscale = sum('"grayscale":true' in row["params"] for row in index)
        assert grayscale >= 15  # camera, brick, coins, grass, gravel, moon are grayscale photos
    if task == "relpos":  # small grayscale photos (coins 303x384) still fit after upscaling
        assert manifest["totals"]["rejected"] == 0


@pytest.mark.parametrize("task", TASKS)
def test_plain_webdataset_reads_every_sample(local_builds, task):
    import webdataset as wds

    out = local_builds[task]
    manifest = json.loads((out / MANIFEST_FILE).read_text())
    urls = [str(out / e["url"]) for e in manifest["shardlist"]]
    samples = list(wds.WebDataset(urls, shardshuffle=False))
    assert len(samples) == manifest["totals"]["samples"]
    for sample in samples:
        fields = (*RECIPES[task].fields, "json")
        assert set(fields) <= set(sample)
        decoded = decode_sample(sample, fields)
        assert decoded["json"]["source"].endswith(".jpg")


@pytest.mark.ray
def test_ray_data_reads_the_shards(ray_session, local_builds):
    import ray.data

    out = local_builds["exemplar"]
    paths = sorted(str(p) for p in out.glob("*.tar"))
    rows = ray.data.read_webdataset(paths, decoder=None).take_all()
    assert len(rows) == json.loads((out / MANIFEST_FILE).read_text())["totals"]["samples"]
    assert {"rgb.jpg", "json"} <= set(rows[0])


def test_same_inputs_and_seed_give_identical_bytes_other_seed_differs(sample_images, local_builds, tmp_path):
    build("color", sample_images, tmp_path / "again")
    assert shard_bytes(tmp_path / "again") == shard_bytes(local_builds["color"])
    build("color", sample_images, tmp_path / "seed1", seed=1)
    assert shard_bytes(tmp_path / "seed1") != shard_bytes(local_builds["color"])


def test_rerun_of_a_finished_build_rebuilds_nothing(sample_images, tmp_path):
    build("exemplar", sample_images, tmp_path / "ex", limit=10)
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "ex").glob("*.tar")}
    report = build_set(
        "exemplar",
        sample_images,
        tmp_path / "ex",
        RECIPES["exemplar"].config_type(),
        workers=0,
        show_progress=False,
        samples_per_shard=8,
        limit=10,
    )
    assert report.built == 0 and report.skipped == 2
    assert before == {p: p.stat().st_mtime_ns for p in (tmp_path / "ex").glob("*.tar")}


def test_other_config_in_the_same_folder_is_refused(sample_images, tmp_path):
    build("relpos", sample_images, tmp_path / "rp", limit=4)
    with pytest.raises(PlanMismatch, match="another configuration"):
        build("relpos", sample_images, tmp_path / "rp", limit=4, seed=3)
    build("relpos", sample_images, tmp_path / "rp", limit=4, seed=3, overwrite=True)


@pytest.mark.slow
def test_sigkill_then_rerun_gives_the_uninterrupted_shard_set(tmp_path):
    from pipelines.sample import write_image_sample

    images = tmp_path / "images"
    write_image_sample(images, per_class=8, seed=1)  # 120 inputs -> 60 shards of 2
    args = ["build", "color", "--images", str(images), "--workers", "0", "--samples-per-shard", "2"]
    cli = [sys.executable, "-m", "pipelines.cli"]
    killed = tmp_path / "killed"
    proc = subprocess.Popen([*cli, *args, "--out", str(killed)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while len(list((killed / PARTS_DIR).glob("*.stats.json"))) < 5:
        assert proc.poll() is None and time.monotonic() < deadline, "build ended before it could be killed"
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (killed / MANIFEST_FILE).exists(), "the build finished before the kill: no interruption tested"
    done_before = len(list((killed / PARTS_DIR).glob("*.stats.json")))
    assert done_before < 60
    subprocess.run([*cli, *args, "--out", str(killed)], check=True, capture_output=True)
    subprocess.run([*cli, *args, "--out", str(tmp_path / "clean")], check=True, capture_output=True)
    assert shard_bytes(killed) == shard_bytes(tmp_path / "clean")
    assert len(shard_bytes(killed)) == 60
    assert (killed / MANIFEST_FILE).read_bytes() == (tmp_path / "clean" / MANIFEST_FILE).read_bytes()
    assert not list(killed.glob("*.tmp")) and not list((killed / PARTS_DIR).glob("*.tmp"))
    index = pq.read_table(killed / "index.parquet").to_pylist()
    assert len(index) == len({r["key"] for r in index}) == 120  # no duplicates after resume


@pytest.mark.ray
def test_build_joins_a_running_ray_cluster_by_address(ray_session, sample_images, local_builds, tmp_path):
    """--ray-address: a second driver (the CLI) ships mtssl's code to an existing cluster and builds there."""
    address = ray_session.get_runtime_context().gcs_address
    out = tmp_path / "cluster"
    args = ["build", "exemplar", "--images", str(sample_images), "--out", str(out), "--samples-per-shard", "8"]
    done = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", *args, "--ray-address", address], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert shard_bytes(out) == shard_bytes(local_builds["exemplar"])


def test_shards_are_the_bytes_webdataset_tarwriter_writes():
    """Plain and pax (long) names, empty and unaligned payloads, the end-of-archive padding."""
    import io

    import numpy as np
    import webdataset as wds

    from pipelines.shardjob import TAR_MTIME
    from pipelines.tarwriter import ShardWriter

    rng = np.random.default_rng(0)
    samples = []
    for i in range(7):
        key = "d/" + "k" * (60 + 15 * i) if i % 2 else f"photo_{i:04d}-5c03a48375"
        fields = {
            "json": b"{}",
            "rgb.jpg": rng.bytes(int(rng.integers(0, 3000))),
            "l.jpg": b"",
            "mask.png": rng.bytes(512),
        }
        samples.append((key, fields))
    expected, got = io.BytesIO(), io.BytesIO()
    with wds.TarWriter(expected, encoder=False, mtime=TAR_MTIME) as writer:
        for key, fields in samples:
            writer.write({"__key__": key, **fields})
    with ShardWriter(got, mtime=TAR_MTIME) as writer:
        for key, fields in samples:
            writer.write(key, fields)
    assert got.getvalue() == expected.getvalue()


def test_a_shard_job_imports_neither_torch_nor_webdataset():
    import subprocess
    import sys

    code = "import sys, pipelines.shardjob; print(sorted({'torch', 'webdataset'} & set(sys.modules)))"
    assert (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"
    )
