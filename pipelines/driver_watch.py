"""A build worker stops when its driver dies: no shard is finished for a build that nobody waits for.

A Ray worker goes on with its task when the driver that submitted it is killed (SIGKILL, a closed
terminal): its shard would finish minutes later, unseen. :func:`watch` starts, once per worker
process, a daemon thread that checks five times a second whether the driver's process still exists (on
the driver's host; a worker on another node leaves that to Ray) and ends the worker at once when it does
not. What the worker was writing stays a temporary file of a dead process, which the rerun removes.
"""

from __future__ import annotations

import os
import threading
import time

from mtssl.contract import HOST, process_alive

EXIT_CODE = 70  # the worker's exit status when its driver is gone
_watched: set[int] = set()
_lock = threading.Lock()


def watch(driver: tuple[str, int] | None, interval: float = 0.2) -> None:
    """Exit this process soon after the driver ``(host, pid)`` is gone (no-op on another host, or when None)."""
    if driver is None or driver[0] != HOST:
        return
    pid = driver[1]
    with _lock:
        if pid in _watched:
            return
        _watched.add(pid)

    def loop() -> None:
        while process_alive(pid):
            time.sleep(interval)
        os._exit(EXIT_CODE)

    threading.Thread(target=loop, name=f"watch-driver-{pid}", daemon=True).start()
