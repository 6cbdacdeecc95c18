"""A hung test fails fast with its stack instead of running into CI's 90-minute limit (pytest-timeout)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest


def test_every_test_has_a_time_limit_and_slow_ones_a_generous_one(request):
    assert float(request.config.getini("timeout")) == 180
    assert request.node.get_closest_marker("timeout") is None  # a quick test: the ini's limit


@pytest.mark.slow
def test_a_slow_test_gets_the_generous_limit(request):
    from tests.conftest import SLOW_TEST_TIMEOUT_S

    marker = request.node.get_closest_marker("timeout")
    assert marker is not None and marker.args == (SLOW_TEST_TIMEOUT_S,)


def test_a_hang_fails_with_its_stack(tmp_path):
    """A test blocked in a wait (as a Ray wait on a loaded machine was) ends at its limit, naming where it hung."""
    (tmp_path / "test_hangs.py").write_text(
        textwrap.dedent(
            """
            import threading

            def wait_for_a_worker_that_never_answers():
                threading.Event().wait()

            def test_hangs():
                wait_for_a_worker_that_never_answers()
            """
        )
    )
    (tmp_path / "pytest.ini").write_text("[pytest]\ntimeout = 2\n")
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path / "test_hangs.py")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert "Timeout" in done.stdout and "wait_for_a_worker_that_never_answers" in done.stdout
