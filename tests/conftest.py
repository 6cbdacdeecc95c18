"""Shared fixtures: a small embedded-sample image tree, one local Ray session for the whole run, one thread."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("RAY_AUTH_MODE", "disabled")


SLOW_TEST_TIMEOUT_S = 600  # a slow test (Ray, torchrun, many steps) gets this long; others pyproject's `timeout`


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that starts Ray is slow too: ``-m "not slow"`` leaves out every process-starting test. A slow
    test without its own ``timeout`` marker gets the generous limit, so a hang still ends with its stack."""
    for item in items:
        if item.get_closest_marker("ray") is not None:
            item.add_marker(pytest.mark.slow)
        if item.get_closest_marker("slow") is not None and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(SLOW_TEST_TIMEOUT_S))


@pytest.fixture(scope="session")
def sample_images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The embedded sample with 3 images per photo (45 JPEGs in 15 class folders)."""
    from pipelines.sample import write_image_sample

    root = tmp_path_factory.mktemp("sample") / "images"
    write_image_sample(root, per_class=3, seed=0)
    return root


@pytest.fixture(scope="module")
def ray_session():
    """One local Ray with 2 worker CPUs in this process, shared by the tests of one module and shut down after
    it (start-up costs seconds). Not one for the whole run: a Ray left idle here for minutes while other
    tests start, kill and stop their own clusters has aborted this process (a Ray check failure in its
    lease code, three times in a row on a busy machine), which ends the whole run with no report."""
    ray = pytest.importorskip("ray")
    from pipelines.runner import init_ray

    init_ray(workers=2, address=None)
    yield ray
    ray.shutdown()


def default_sigint() -> None:
    """``preexec_fn`` for a child that a test will Ctrl-C: a shell's background job starts with SIGINT
    ignored, and Python then installs no KeyboardInterrupt handler, so restore the default first."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture
def one_thread():
    """One torch and one BLAS thread: tiny problems only lose to threads on shared cores."""
    import sklearn.linear_model  # noqa: F401 - loads its BLAS before the limit, so that the limit covers it too
    import torch
    from threadpoolctl import threadpool_limits

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def s3_server():
    """One local S3 server for the session (``tests/s3kit.py``), with the standard AWS variables pointing at
    it; yields an s3fs filesystem on it."""
    pytest.importorskip("s3fs")
    pytest.importorskip("moto")
    from .s3kit import environment, fresh_s3fs, moto_server

    with moto_server() as variables, environment(variables):
        yield fresh_s3fs()
    fresh_s3fs()
