"""Registry fixtures: one real `mlflow server` (SQLite + local artifacts, loopback) per session.

The server runs with the webhook env vars a loopback http receiver needs
(MLFLOW_WEBHOOK_ALLOWED_SCHEMES=http,https, MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS=true, a Fernet
MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY) and a 1 s webhook-list cache so a webhook created mid-session
sees the next event. A tiny threaded HTTP receiver records webhook deliveries.
"""

from __future__ import annotations

import queue
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests import factories
from tests.mlflow_server import MlflowServer, running_server

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


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory) -> MlflowServer:
    """Start `mlflow server` on a free loopback port; stop it (its process group) at session end."""
    root = tmp_path_factory.mktemp("mlflow-server")
    with running_server(root, on_log=_SERVER_LOGS.append) as srv:
        yield srv


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
