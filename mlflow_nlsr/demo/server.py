"""Start a local ``mlflow server --app-name nlsr`` for the demo: SQLite + local artifacts on loopback.

The server gets the NLSR environment (``NLSR_WORK_DIR``, ``NLSR_STORE_URL``, ``NLSR_WEBHOOK_SECRET``)
so both triggers are live: the after-request hook and ``POST /nlsr/webhook``. Webhooks to an http
loopback receiver need ``MLFLOW_WEBHOOK_ALLOWED_SCHEMES`` and ``MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS``
(docs/registry.md). MLflow's own job runner (huey consumers, ~10 processes) is switched off: the demo
does not use it and a two-core machine cannot spare it. The process runs in its own session so
stopping it ends uvicorn and its workers together.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from mlflow_nlsr.errors import RegistryError

STARTUP_TIMEOUT_S = 300.0


@dataclass
class DemoServer:
    """A running ``mlflow server`` subprocess: its URL, process id and log file."""

    url: str
    pid: int
    log: Path
    process: subprocess.Popen[bytes] | None = None

    def stop(self, timeout: float = 15.0) -> None:
        """Terminate the server's process group (SIGTERM, then SIGKILL after ``timeout`` seconds)."""
        if self.process is None or self.process.poll() is not None:
            return
        try:
            os.killpg(self.pid, signal.SIGTERM)
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.pid, signal.SIGKILL)
            self.process.wait(timeout=timeout)
        except ProcessLookupError:
            pass


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def healthy(url: str, path: str = "/health") -> bool:
    """Return True if ``GET url+path`` answers 200 within two seconds."""
    try:
        with urllib.request.urlopen(f"{url}{path}", timeout=2) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


def server_env(nlsr_env: Mapping[str, str], fernet_key: str) -> dict[str, str]:
    """Return the server's environment: ours without MLFLOW_*, plus webhook, NLSR and thread settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(
        MLFLOW_WEBHOOK_ALLOWED_SCHEMES="http,https",
        MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS="true",
        MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY=fernet_key,
        MLFLOW_WEBHOOK_CACHE_TTL="1",
        MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false",
        OMP_NUM_THREADS="1",
    )
    env.update(nlsr_env)
    return env


def fernet_key(path: Path) -> str:
    """Return the webhook-secret encryption key kept in ``path`` (created on first use)."""
    if path.is_file():
        return path.read_text().strip()
    from cryptography.fernet import Fernet

    key = Fernet.generate_key().decode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(key)
    path.chmod(0o600)
    return key


def start_server(
    root: Path,
    nlsr_env: Mapping[str, str],
    *,
    port: int | None = None,
    timeout: float = STARTUP_TIMEOUT_S,
) -> DemoServer:
    """Start ``mlflow server --app-name nlsr`` with its SQLite DB and artifacts under ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    mlflow_bin = Path(sys.executable).with_name("mlflow")
    cmd = [str(mlflow_bin)] if mlflow_bin.exists() else [sys.executable, "-m", "mlflow"]
    cmd += [
        "server",
        "--backend-store-uri", f"sqlite:///{(root / 'mlflow.db').resolve()}",
        "--artifacts-destination", str((root / "artifacts").resolve()),
        "--host", "127.0.0.1",
        "--port", str(port),
        "--workers", "1",
        "--app-name", "nlsr",
    ]  # fmt: skip
    env = server_env(nlsr_env, fernet_key(root / "webhook.key"))
    log = root / "server.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    server = DemoServer(url=url, pid=proc.pid, log=log, process=proc)
    deadline = time.monotonic() + timeout
    while not (healthy(url) and healthy(url, "/nlsr/health")):
        if proc.poll() is not None:
            raise RegistryError(f"mlflow server exited with {proc.returncode}; log {log}:\n{_tail(log)}")
        if time.monotonic() > deadline:
            server.stop()
            raise RegistryError(f"mlflow server not healthy after {timeout:.0f}s; log {log}:\n{_tail(log)}")
        time.sleep(0.5)
    return server


def _tail(log: Path, chars: int = 3000) -> str:
    return log.read_text(errors="replace")[-chars:] if log.is_file() else "(no log)"
