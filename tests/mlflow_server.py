"""Start a real `mlflow server` subprocess on loopback for tests (SQLite backend, local artifacts)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from mlflow_nlsr.demo.server import free_port, healthy, server_env

__all__ = ["MlflowServer", "free_port", "healthy", "nlsr_app_server", "running_server", "webhook_env"]

STARTUP_TIMEOUT_S = 300


@dataclass
class MlflowServer:
    url: str
    root: Path
    log: Path
    pid: int


def webhook_env() -> dict[str, str]:
    """What a server needs to deliver signed webhooks to a loopback http receiver (no job runner)."""
    from cryptography.fernet import Fernet

    env = server_env({}, Fernet.generate_key().decode())
    return {k: v for k, v in env.items() if k.startswith("MLFLOW_")}


@contextlib.contextmanager
def running_server(
    root: Path,
    *,
    app_name: str | None = None,
    extra_env: Mapping[str, str] | None = None,
    port: int | None = None,
    on_log: Callable[[Path], None] | None = None,
) -> Iterator[MlflowServer]:
    """Run `mlflow server` (optionally `--app-name`) until the block exits; kill its process group."""
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(webhook_env(), OMP_NUM_THREADS="1", **dict(extra_env or {}))
    mlflow_bin = Path(sys.executable).with_name("mlflow")
    cmd = [str(mlflow_bin), "server"] if mlflow_bin.exists() else [sys.executable, "-m", "mlflow", "server"]
    cmd += [
        "--backend-store-uri",
        f"sqlite:///{root / 'mlflow.db'}",
        "--artifacts-destination",
        str(root / "artifacts"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    if app_name:
        cmd += ["--app-name", app_name]
    log = root / f"server-{port}.log"
    if on_log is not None:
        on_log(log)
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not healthy(url):
            if proc.poll() is not None:
                raise RuntimeError(f"mlflow server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"mlflow server unhealthy after {STARTUP_TIMEOUT_S}s:\n{log.read_text()[-3000:]}"
                )
            time.sleep(0.5)
        yield MlflowServer(url=url, root=root, log=log, pid=proc.pid)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


@contextlib.contextmanager
def nlsr_app_server(root: Path, store_url: str, secret: str) -> Iterator[MlflowServer]:
    """`mlflow server --app-name nlsr` queueing into `store_url`, its /nlsr/webhook verifying `secret`."""
    env = {"NLSR_STORE_URL": store_url, "NLSR_WEBHOOK_SECRET": secret, "NLSR_WORK_DIR": str(root / "w")}
    with running_server(root, app_name="nlsr", extra_env=env) as srv:
        yield srv
