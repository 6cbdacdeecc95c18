"""Building shard sets into an S3 bucket, against a real local S3 server (``tests/s3kit.py``): the objects are
the bytes of a build on disk, ``info``/``verify``/``preview`` read them, a killed build resumes, and bad URLs,
a missing bucket and refused credentials each end in one clear line."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mtssl.contract import MANIFEST_FILE, PARTS_DIR
from pipelines.build import build
from pipelines.cli import app
from pipelines.recipes import RECIPES

from ..s3kit import environment, fresh_s3fs, moto_server

pytestmark = pytest.mark.slow  # a local S3 server (and, for some, a CLI in a subprocess)

BUCKET = "mtssl-build"
CLI = [sys.executable, "-m", "pipelines.cli"]
SKIP = (".png", ".stats.json")  # compared: everything but previews and the stats parts (they hold build times)


def digests_on_disk(folder: Path) -> dict[str, str]:
    """md5 of every file of a set (its parts included), by path relative to the set."""
    return {
        p.relative_to(folder).as_posix(): hashlib.md5(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.name.startswith(".") and not p.name.endswith(SKIP)
    }


def digests_in_bucket(fs, url: str) -> dict[str, str]:
    prefix = url[len("s3://") :].rstrip("/")
    fs.invalidate_cache()
    return {
        name[len(prefix) + 1 :]: hashlib.md5(fs.cat_file(name)).hexdigest()
        for name in sorted(fs.find(prefix))
        if not name.endswith(SKIP)
    }


def run_build(images: Path, out: str, workers: int = 0):
    return build("relpos", images, out, RECIPES["relpos"].config_type(), workers=workers, samples_per_shard=8,
                 show_progress=False)  # fmt: skip


@pytest.fixture(scope="module")
def on_disk(sample_images, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("disk") / "relpos"
    run_build(sample_images, str(out))
    return out


@pytest.fixture(scope="module")
def in_bucket(s3_server, sample_images) -> str:
    s3_server.mkdir(BUCKET)
    url = f"s3://{BUCKET}/sets/relpos"
    run_build(sample_images, url)
    return url


def test_a_build_into_a_bucket_writes_the_bytes_of_a_build_on_disk(s3_server, in_bucket, on_disk):
    remote, here = digests_in_bucket(s3_server, in_bucket), digests_on_disk(on_disk)
    assert remote == here  # every shard, part, index, reject list, plan and the manifest
    assert MANIFEST_FILE in remote and sum(name.endswith(".tar") for name in remote) == 6
    records = [s3_server.cat_file(name).decode() for name in s3_server.find(in_bucket[5:]) if name.endswith(".json")]
    secrets = (os.environ["AWS_SECRET_ACCESS_KEY"], os.environ["AWS_ENDPOINT_URL"])
    assert records and not any(secret in record for secret in secrets for record in records)  # no credential kept


def test_a_rerun_against_the_bucket_finds_every_shard_done(in_bucket, sample_images):
    report = run_build(sample_images, in_bucket)
    assert (report.built, report.skipped) == (0, 6)


def test_info_verify_and_preview_read_a_set_in_the_bucket(in_bucket, tmp_path):
    runner = CliRunner()
    info = runner.invoke(app, ["info", in_bucket])
    assert info.exit_code == 0 and "45 inputs" in info.output, info.output
    verify = runner.invoke(app, ["verify", in_bucket])
    assert verify.exit_code == 0 and "verified" in verify.output, verify.output
    sheet = tmp_path / "sheet.png"
    preview = runner.invoke(app, ["preview", in_bucket, "--out", str(sheet), "--count", "3"])
    assert preview.exit_code == 0, preview.output
    assert sheet.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_verify_finds_a_damaged_object(s3_server, in_bucket):
    damaged = f"{BUCKET}/damaged/relpos"
    s3_server.copy(in_bucket[len("s3://") :], damaged, recursive=True)
    shard = f"{damaged}/relpos-000002.tar"
    data = bytearray(s3_server.cat_file(shard))
    data[len(data) // 2] ^= 0xFF  # same size, other bytes
    s3_server.pipe_file(shard, bytes(data))
    result = CliRunner().invoke(app, ["verify", f"s3://{damaged}"])
    assert result.exit_code == 1 and "relpos-000002.tar: md5 mismatch" in result.output, result.output


def test_a_killed_build_resumed_against_the_bucket_gives_the_objects_of_an_uninterrupted_one(
    s3_server, tmp_path, in_bucket
):
    from pipelines.sample import write_image_sample

    images = tmp_path / "images"
    write_image_sample(images, per_class=4, seed=1)  # 60 inputs -> 30 shards of 2
    args = ["build", "color", "--images", str(images), "--workers", "0", "--samples-per-shard", "2"]
    killed, clean = f"s3://{BUCKET}/killed/color", f"s3://{BUCKET}/clean/color"
    proc = subprocess.Popen([*CLI, *args, "--out", killed], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    parts = f"{BUCKET}/killed/color/{PARTS_DIR}"
    deadline = time.monotonic() + 120
    while len([p for p in (s3_server.find(parts) if s3_server.exists(parts) else []) if p.endswith(".stats.json")]) < 3:
        assert proc.poll() is None and time.monotonic() < deadline, "the build ended before it could be killed"
        s3_server.invalidate_cache()
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    s3_server.invalidate_cache()
    assert not s3_server.exists(f"{BUCKET}/killed/color/{MANIFEST_FILE}"), "the build finished before the kill"
    resumed = subprocess.run([*CLI, *args, "--out", killed], capture_output=True, text=True)
    assert resumed.returncode == 0 and "already done" in resumed.stdout + resumed.stderr, resumed.stderr
    subprocess.run([*CLI, *args, "--out", clean], check=True, capture_output=True)
    assert digests_in_bucket(s3_server, killed) == digests_in_bucket(s3_server, clean)


@pytest.mark.ray
def test_two_ray_workers_build_into_the_bucket(s3_server, sample_images, on_disk):
    """The CLI starts its own local Ray (its workers inherit the bucket's variables, as a cluster's nodes get
    them from their own environment) and its two workers upload the shards."""
    url = f"s3://{BUCKET}/ray/relpos"
    args = ["build", "relpos", "--images", str(sample_images), "--out", url, "--workers", "2"]
    args += ["--samples-per-shard", "8"]
    done = subprocess.run([*CLI, *args], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert digests_in_bucket(s3_server, url) == digests_on_disk(on_disk)


def one_error_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    assert len([line for line in lines if line.startswith("error:")]) == 1, output
    return " ".join(" ".join(lines).split())  # rich wraps long lines


@pytest.mark.parametrize(
    "url,expected",
    [
        ("s3://no-such-bucket-mtssl/relpos", "does not exist"),
        ("nosuchscheme://bucket/relpos", "cannot write to nosuchscheme://bucket/relpos: Protocol not known"),
    ],
)
def test_a_missing_bucket_or_a_bad_url_is_one_clear_line(s3_server, sample_images, url, expected):
    result = CliRunner().invoke(
        app, ["build", "relpos", "--images", str(sample_images), "--out", url, "--workers", "0"]
    )
    assert result.exit_code != 0
    assert expected in one_error_line(result.output)


def test_refused_credentials_are_one_clear_line(sample_images, tmp_path):
    """A server that checks credentials (moto's IAM mode) refuses the test ones: build, info and training each
    say so in one line, and exit non-zero."""
    with moto_server(auth=True) as variables, environment(variables):
        fresh_s3fs()
        url = "s3://mtssl-locked/relpos"
        runner = CliRunner()
        built = runner.invoke(app, ["build", "relpos", "--images", str(sample_images), "--out", url, "--workers", "0"])
        assert built.exit_code != 0 and "access denied" in one_error_line(built.output), built.output
        info = runner.invoke(app, ["info", url])
        assert info.exit_code != 0 and "access denied" in one_error_line(info.output), info.output
        train = subprocess.run(
            [sys.executable, "-m", "mtssl.train.cli", "--shards", "s3://mtssl-locked/", "--out", str(tmp_path / "r")],
            capture_output=True, text=True,
        )  # fmt: skip
        assert train.returncode != 0 and "access denied" in train.stderr, train.stderr[-2000:]
        assert len(train.stderr.strip().splitlines()) == 1, train.stderr
    fresh_s3fs()
