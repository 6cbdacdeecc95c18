"""The consumer's fixtures (tiny shard sets of every task, a tiny-run config), for the trainer's faults."""

import subprocess

import pytest

from tests.mtssl.conftest import _seeded_one_thread, shard_root, tiny_config  # noqa: F401


@pytest.fixture
def tiny_disk(tmp_path):
    """A real 1 MiB filesystem (tmpfs), where this machine lets the tests mount one (root on Linux)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small filesystem here: {done.stderr.decode().strip()[:100]}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)
