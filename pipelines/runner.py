"""Running a plan: the pending shards in-process (``workers=0``) or as Ray tasks (local or a cluster).

The same :func:`pipelines.shardjob.build_shard` runs either way. Shards that are already done (their
stats file exists) are skipped, so a rerun after an interruption resumes; the manifest comes last.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from mtssl.contract import HOST
from pipelines.manifest import done_shards, write_manifest
from pipelines.plan import BuildPlan
from pipelines.progress import make_progress
from pipelines.shardjob import build_shard


@dataclass
class RunReport:
    manifest: dict[str, Any]
    built: int
    skipped: int
    seconds: float
    ray_startup_s: float = 0.0


def pending_shards(plan: BuildPlan) -> list[int]:
    done = done_shards(plan.out, plan.task, plan.num_shards)
    return [i for i in range(plan.num_shards) if i not in done]


def init_ray(workers: int, address: str | None) -> float:
    """Start (or join) Ray and warm its workers; returns the seconds it took.

    Local Ray gets exactly ``workers`` CPUs. Each worker imports what a shard job needs before the
    build starts, so that start-up is paid and reported once, apart from the build (0.3 s: a shard job
    imports neither webdataset nor torch since shards are written by ``pipelines.tarwriter``; 1.6 s
    before).
    """
    import ray

    if ray.is_initialized():
        return 0.0
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    start = time.perf_counter()
    with keep_sigterm_handler():  # ray.init installs sys.exit(15) on SIGTERM; the CLI's own line is kept
        _start_ray(workers, address)
    warm = ray.remote(num_cpus=1)(_import_shard_job)
    ray.get([warm.remote() for _ in range(max(1, workers))])
    return time.perf_counter() - start


@contextmanager
def keep_sigterm_handler():
    """Restore the SIGTERM handler in place before the block (in the main thread, where one can be set)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _start_ray(workers: int, address: str | None) -> None:
    import ray

    if address:
        import mtssl
        import pipelines

        ray.init(
            address=address, runtime_env={"py_modules": [pipelines, mtssl]}, logging_level="ERROR", log_to_driver=False
        )
    else:
        ray.init(num_cpus=workers, include_dashboard=False, logging_level="ERROR", log_to_driver=False)


def _import_shard_job() -> int:
    import pipelines.shardjob  # noqa: F401

    time.sleep(0.1)  # hold this worker a moment, so each warm-up task lands on its own worker
    return os.getpid()


def _run_local(plan: BuildPlan, shards: list[int], advance: Callable[[dict], None]) -> None:
    for index in shards:
        advance(build_shard(plan.task, plan.config, plan.source_root, plan.out, index, plan.shard_units(index)))


def _run_ray(plan: BuildPlan, shards: list[int], advance: Callable[[dict], None]) -> None:
    import ray

    remote = ray.remote(num_cpus=1, max_retries=2)(build_shard)
    config_ref = ray.put(plan.config)
    driver = (HOST, os.getpid())  # a worker on this host ends when this process dies
    refs = [
        remote.remote(plan.task, config_ref, plan.source_root, plan.out, i, plan.shard_units(i), driver) for i in shards
    ]
    while refs:
        done, refs = ray.wait(refs, num_returns=1)
        advance(ray.get(done[0]))


def run_plan(
    plan: BuildPlan, workers: int = 2, ray_address: str | None = None, show_progress: bool = True
) -> RunReport:
    """Build every pending shard, then write the manifest."""
    shards = pending_shards(plan)
    skipped = plan.num_shards - len(shards)
    ray_startup = init_ray(workers, ray_address) if shards and (workers > 0 or ray_address) else 0.0
    start = time.perf_counter()
    with make_progress(disable=not show_progress) as progress:
        total = sum(len(plan.shard_units(i)) for i in shards)
        bar = progress.add_task(f"build {plan.task}", total=total, unit=plan.unit_name)

        def advance(stats: dict) -> None:
            progress.advance(bar, stats["inputs"])

        if not shards:
            pass
        elif workers > 0 or ray_address:
            _run_ray(plan, shards, advance)
        else:
            _run_local(plan, shards, advance)
    seconds = time.perf_counter() - start
    return RunReport(write_manifest(plan), len(shards), skipped, seconds, ray_startup)
