"""Running a sweep's items on Ray: one Ray task per (run, seed), holding the CPUs (and GPU) it declares.

Plain Ray tasks rather than Ray Tune: an item is one child process (``mtssl.sweep.execute``) whose run
folder already is its checkpoint and its record, so the sweep's resume is "look at the folders" and needs
no experiment state of Tune's (whose restore would keep a second copy of what the folders say); resources
are the tasks' ``num_cpus``/``num_gpus``; logs are the items' own files. Local Ray by default (as many CPUs
as the machine has), ``--ray-address`` joins a cluster; at most ``parallel`` items run at once.

The sweep's record, ``OUT/sweep.json``, is rewritten after every item: each item's status, error and wall
times (training summed over the attempts, so a resumed run's time is its whole time).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mtssl.contract.atomic import write_bytes_atomic
from mtssl.report.sweep import last_wall_s
from mtssl.sweep.execute import run_item
from mtssl.sweep.plan import Item

RECORD_FILE = "sweep.json"


@dataclass(frozen=True)
class Share:
    """What each item holds while it runs."""

    cpus: float
    gpus: float
    parallel: int


def read_record(out: Path) -> dict[str, Any]:
    path = out / RECORD_FILE
    if not path.is_file():
        return {"items": {}}
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {"items": {}}


def update_record(out: Path, record: dict[str, Any], item: Item, result: dict[str, Any]) -> None:
    """Add one item's result (wall times summed over attempts) and rewrite the record atomically."""
    entry = record["items"].get(item.name, {"run": item.run, "seed": item.seed, "train_s": 0.0, "probe_s": {}})
    spent = result["train_s"]
    if not spent and entry.get("status") in (None, "interrupted") and item.trained:  # found trained: its last
        spent = last_wall_s(item.folder) or 0.0  # attempt's time was never recorded (a driver stopped before)
    entry["train_s"] = round(entry.get("train_s", 0.0) + spent, 1)
    entry["probe_s"] = {**entry.get("probe_s", {}), **{k: round(v, 1) for k, v in result["probe_s"].items()}}
    entry.update(status=result["status"], error=result.get("error", ""), folder=str(item.folder))
    entry["attempts"] = entry.get("attempts", 0) + (1 if result["train_s"] or result["probe_s"] else 0)
    record["items"][item.name] = entry
    write_bytes_atomic(out / RECORD_FILE, (json.dumps(record, indent=1, sort_keys=True) + "\n").encode())


@contextmanager
def ray_session(address: str | None):
    """Start local Ray (or join ``address``); the SIGTERM handler in place before ``ray.init`` is kept
    (Ray would turn SIGTERM into a silent exit)."""
    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    previous = signal.getsignal(signal.SIGTERM)
    try:
        if address:
            import mtssl

            ray.init(address=address, runtime_env={"py_modules": [mtssl]}, logging_level="ERROR", log_to_driver=False)
        else:
            ray.init(include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    finally:
        signal.signal(signal.SIGTERM, previous)
    try:
        yield ray
    finally:
        ray.shutdown()


def share_of(ray: Any, parallel: int | None, resources: dict[str, float]) -> Share:
    """Each item's CPUs and GPUs: the spec's ``resources``, else the cluster's CPUs over ``parallel`` and one
    GPU per item where there are GPUs (then ``parallel`` defaults to the GPU count)."""
    total = ray.cluster_resources()
    cpus_total, gpus_total = float(total.get("CPU", 1)), float(total.get("GPU", 0))
    if parallel is None:
        parallel = max(1, int(gpus_total)) if gpus_total else 1
    gpus = resources.get("gpus", min(1.0, gpus_total / parallel) if gpus_total else 0.0)  # Ray shares fractions
    cpus = resources.get("cpus", max(1.0, float(int(cpus_total // parallel))))
    return Share(cpus=cpus, gpus=gpus, parallel=parallel)


def run_on_ray(
    items: list[Item], out: Path, share: Share, ray: Any, say: Callable[[str], None]
) -> dict[str, dict[str, Any]]:
    """Run ``items`` as Ray tasks, at most ``share.parallel`` at once; results by item name."""
    remote = ray.remote(run_item).options(num_cpus=share.cpus, num_gpus=share.gpus, max_retries=0)
    record, results, waiting, running = read_record(out), {}, list(items), {}
    try:
        while waiting or running:
            while waiting and len(running) < share.parallel:
                item = waiting.pop(0)
                running[remote.remote(item.to_plain(), share.cpus)] = (item, time.perf_counter(), item.trained)
                say(f"started  {item.name} ({'resuming' if item.started else 'new'}; {share.cpus:g} CPU)")
            done, _ = ray.wait(list(running), num_returns=1)
            item, tic, _ = running.pop(done[0])
            results[item.name] = finished(ray, done[0], item)
            update_record(out, record, item, results[item.name])
            say(line_for(item, results[item.name], time.perf_counter() - tic))
    except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM (mtssl.contract.interrupts.Terminated): kept as raised
        record_interrupted(out, record, running)
        stop_running(ray, running)
        raise exc from None
    return results


def record_interrupted(out: Path, record: dict[str, Any], running: dict[Any, tuple[Item, float, bool]]) -> None:
    """The time the running items trained before the stop, so a run's training time sums every attempt. An
    item that finished training in this attempt has that time in its log's end record (see
    ``mtssl.report.sweep.train_seconds``); one that was only probing trained in an earlier attempt."""
    for item, tic, was_trained in running.values():
        spent = 0.0 if was_trained or item.trained else time.perf_counter() - tic
        update_record(out, record, item, {"train_s": spent, "probe_s": {}, "status": "interrupted", "error": ""})


def stop_running(ray: Any, running: dict[Any, Any], wait_s: float = 150.0) -> None:
    """End the running tasks' workers; each run's process gets SIGTERM as its worker dies (see
    ``mtssl.sweep.execute``) and stops as on Ctrl-C, keeping its checkpoints. A worker blocked waiting
    for its child does not always see a plain cancel's KeyboardInterrupt, so the cancel is forced."""
    try:
        for ref in running:
            ray.cancel(ref, force=True)
        deadline = time.time() + wait_s
        while running and time.time() < deadline:
            done, _ = ray.wait(list(running), num_returns=1, timeout=max(deadline - time.time(), 0.1))
            for ref in done:
                running.pop(ref)
    except KeyboardInterrupt:
        pass


def finished(ray: Any, ref: Any, item: Item) -> dict[str, Any]:
    """A task's result; a task that died (its worker killed, out of memory) is a failed item, not a crash."""
    try:
        return ray.get(ref)
    except Exception as exc:  # noqa: BLE001 - Ray wraps whatever killed the worker
        reason = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        return {"name": item.name, "train_s": 0.0, "probe_s": {}, "status": "failed", "error": f"Ray: {reason}"}


def line_for(item: Item, result: dict[str, Any], seconds: float) -> str:
    from mtssl.train.logging import duration

    if result["status"] == "ok":
        return f"finished {item.name} in {duration(seconds)}"
    return f"FAILED   {item.name} after {duration(seconds)}: {result['error']} (log: {item.log_file})"


def stderr_line(text: str) -> None:
    print(text, file=sys.stderr, flush=True)
