"""A real local S3 server for the tests: moto's standalone HTTP server on a free localhost port, talked to
over HTTP by s3fs (and curl, Ray's pyarrow filesystem) through the standard AWS variables. Nothing patches
a client in process."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_env(port: int) -> dict[str, str]:
    """The variables a client of the local server needs (the credentials moto accepts by default)."""
    return {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
    }


@contextmanager
def moto_server(auth: bool = False) -> Iterator[dict[str, str]]:
    """Run moto's S3 server until the block ends; yields its client variables. With ``auth`` the server
    checks every request's credentials (moto's IAM mode): the test credentials are then refused."""
    port = free_port()
    server = shutil.which("moto_server", path=str(Path(sys.executable).parent)) or "moto_server"
    env = {**os.environ, **({"INITIAL_NO_AUTH_ACTION_COUNT": "0"} if auth else {})}
    proc = subprocess.Popen(
        [server, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("the local S3 server did not start") from None
                time.sleep(0.2)
        yield server_env(port)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@contextmanager
def environment(variables: dict[str, str]) -> Iterator[None]:
    """Set ``variables`` in this process (and so in its children) until the block ends."""
    saved = {k: os.environ.get(k) for k in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def fresh_s3fs():
    """An s3fs filesystem that reads the variables as they are now (s3fs caches its instances)."""
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()
    return s3fs.S3FileSystem()
