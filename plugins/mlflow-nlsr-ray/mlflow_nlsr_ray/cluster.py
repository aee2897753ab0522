"""A throwaway single-node Ray cluster on loopback (tests and bench): ``ray start --head --block``.

Only what this context manager started is stopped: its ``ray start --block`` process (which stops the
node's processes when terminated) and then that process's session, never other Ray clusters.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

#: what a small shared CPU box can spare: 2 CPUs and a 200 MB object store
OBJECT_STORE_BYTES = 200 * 1024**2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def local_cluster(num_cpus: int = 2, *, startup_timeout_s: float = 180.0) -> Iterator[str]:
    """Start a head node on 127.0.0.1 (no dashboard, no usage stats); yield its ``host:port`` address."""
    port = _free_port()
    temp = Path(tempfile.mkdtemp(prefix="nlsr-ray-", dir="/tmp"))  # short: Ray's socket paths are limited
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", RAY_USAGE_STATS_ENABLED="0")
    ray_cli = str(Path(sys.executable).with_name("ray"))
    cmd = [ray_cli, "start", "--head", "--block", "--num-cpus", str(num_cpus), "--num-gpus", "0",
           "--node-ip-address", "127.0.0.1", "--port", str(port), "--include-dashboard", "false",
           "--disable-usage-stats", "--object-store-memory", str(OBJECT_STORE_BYTES),
           "--temp-dir", str(temp)]  # fmt: skip
    log_path = temp / "ray-start.log"
    with log_path.open("wb") as log:
        head = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    address = f"127.0.0.1:{port}"
    try:
        _wait(ray_cli, address, head, log_path, startup_timeout_s)
        yield address
    finally:
        head.terminate()
        try:
            head.wait(timeout=60)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(head.pid, signal.SIGKILL)


def _wait(ray_cli: str, address: str, head: subprocess.Popen, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if head.poll() is not None:
            raise RuntimeError(f"ray start exited {head.returncode}: {log.read_text()[-3000:]}")
        probe = subprocess.run([ray_cli, "status", "--address", address], capture_output=True, timeout=60)
        if probe.returncode == 0:
            return
        time.sleep(2)
    raise RuntimeError(f"no Ray cluster at {address} after {timeout}s: {log.read_text()[-3000:]}")
