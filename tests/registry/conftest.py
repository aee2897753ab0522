"""Registry fixtures: one real `mlflow server` (SQLite + local artifacts, loopback) per session.

The server runs with the webhook env vars a loopback http receiver needs
(MLFLOW_WEBHOOK_ALLOWED_SCHEMES=http,https, MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS=true, a Fernet
MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY) and a 1 s webhook-list cache so a webhook created mid-session
sees the next event. A tiny threaded HTTP receiver records webhook deliveries.
"""

from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests import factories

STARTUP_TIMEOUT_S = 240
_SERVER_LOGS: list[Path] = []


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Attach the tail of the mlflow server log to failing registry tests."""
    outcome = yield
    report = outcome.get_result()
    if report.failed and _SERVER_LOGS and _SERVER_LOGS[-1].exists():
        report.sections.append(
            ("mlflow server log (tail)", _SERVER_LOGS[-1].read_text(errors="replace")[-4000:])
        )


@dataclass
class MlflowServer:
    url: str
    root: Path
    log: Path


@dataclass
class Delivery:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    url: str
    deliveries: queue.Queue[Delivery] = field(default_factory=queue.Queue)

    def wait_for(self, predicate, timeout: float = 60.0) -> Delivery:
        """Return the first delivery matching `predicate` (others are dropped) or fail."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                item = self.deliveries.get(timeout=max(0.05, deadline - time.monotonic()))
            except queue.Empty:
                break
            if predicate(item):
                return item
        raise AssertionError(f"no matching webhook delivery within {timeout} s")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory) -> MlflowServer:
    """Start `mlflow server` on a free loopback port; stop it (its process group) at session end."""
    from cryptography.fernet import Fernet

    root = tmp_path_factory.mktemp("mlflow-server")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(
        MLFLOW_WEBHOOK_ALLOWED_SCHEMES="http,https",
        MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS="true",
        MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY=Fernet.generate_key().decode(),
        MLFLOW_WEBHOOK_CACHE_TTL="1",
        MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false",
        OMP_NUM_THREADS="1",
    )
    mlflow_bin = Path(sys.executable).with_name("mlflow")
    cmd = [
        str(mlflow_bin) if mlflow_bin.exists() else sys.executable,
        *([] if mlflow_bin.exists() else ["-m", "mlflow"]),
        "server",
        "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
        "--artifacts-destination", str(root / "artifacts"),
        "--host", "127.0.0.1",
        "--port", str(port),
        "--workers", "1",
    ]  # fmt: skip
    log = root / "server.log"
    _SERVER_LOGS.append(log)
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not _healthy(url):
            if proc.poll() is not None:
                raise RuntimeError(f"mlflow server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"mlflow server not healthy after {STARTUP_TIMEOUT_S} s:\n{log.read_text()[-3000:]}"
                )
            time.sleep(0.5)
        yield MlflowServer(url=url, root=root, log=log)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


@pytest.fixture(scope="session")
def registry(mlflow_server):
    """A RegistryClient bound to the session server."""
    from mlflow_nlsr.registry.client import RegistryClient

    return RegistryClient(mlflow_server.url)


@pytest.fixture
def model_name() -> str:
    """A fresh registered-model name per test."""
    return f"nlsr-test-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="session")
def tiny_hf_dir(tmp_path_factory) -> Path:
    """A small random Llama checkpoint (2 layers) with tokenizer."""
    return factories.make_tiny_llama(tmp_path_factory.mktemp("reg-hf") / "model", layers=2)


@pytest.fixture(scope="session")
def tiny_peft_dir(tiny_hf_dir, tmp_path_factory) -> Path:
    """A LoRA adapter for `tiny_hf_dir`."""
    return factories.make_lora_adapter(tiny_hf_dir, tmp_path_factory.mktemp("reg-peft") / "adapter", r=4)


@pytest.fixture(scope="session")
def receiver() -> Receiver:
    """A threaded HTTP server on 127.0.0.1 that records every POST and answers 200."""
    rec_holder: list[Receiver] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server API
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            rec_holder[0].deliveries.put(Delivery(self.path, dict(self.headers.items()), body))
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"ok": true}')

        def log_message(self, format: str, *args) -> None:  # noqa: A002 - silence request logging
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    rec = Receiver(url=f"http://127.0.0.1:{server.server_address[1]}")
    rec_holder.append(rec)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield rec
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="package", autouse=True)
def no_process_global_mlflow(tmp_path_factory):
    """Point the process-global tracking URI at a throwaway SQLite file and fail if anything used it.

    The adapter must talk only to the server it was given; MLflow helpers that silently fall back to
    the global URI would otherwise create ./mlflow.db.
    """
    trap = tmp_path_factory.mktemp("global-trap") / "must-not-exist.db"
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{trap}")
    # Fail fast instead of MLflow's default ~2 min of client retries per request.
    mp.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    mp.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "60")
    mp.delenv("MLFLOW_REGISTRY_URI", raising=False)
    yield
    mp.undo()
    assert not trap.exists(), "something used the process-global MLflow tracking URI"
