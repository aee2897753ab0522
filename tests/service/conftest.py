"""Service fixtures: one real `mlflow server --app-name nlsr` per session, tiny models, gate configs."""

from __future__ import annotations

import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from tests import factories
from tests.mlflow_server import nlsr_app_server

PERMISSIVE = {
    "suites": ["safety", "overrefusal", "utility"],
    "judge": "keyword",
    "rules": ["asr <= 1.0", "refusal_rate <= aligned + 1.0", "utility >= finetuned - 1.0"],
}
STRICT = {"suites": ["safety"], "judge": "keyword", "rules": ["asr <= -1.0"]}


@pytest.fixture(scope="session")
def app_store_url(tmp_path_factory) -> str:
    """The job store the server's app plugin queues into (separate from the tests' own stores)."""
    return f"sqlite:///{tmp_path_factory.mktemp('app-store') / 'jobs.db'}"


@pytest.fixture(scope="session")
def server(tmp_path_factory, app_store_url):
    """`mlflow server --app-name nlsr` on loopback with webhooks enabled and the after-request trigger on."""
    with nlsr_app_server(tmp_path_factory.mktemp("nlsr-server"), app_store_url, "app-secret") as srv:
        yield srv


@pytest.fixture(scope="session")
def models(tmp_path_factory):
    """(base, aligned, finetuned) tiny dirs; the fine-tuned adapter continues the aligned one."""
    return factories.make_model_trio(tmp_path_factory.mktemp("svc-models"))


@pytest.fixture(scope="session")
def references(server, models):
    """Base and aligned registered once: their model URIs."""
    from mlflow_nlsr.registry.client import RegistryClient
    from mlflow_nlsr.registry.models import log_local_model

    client = RegistryClient(server.url)
    base, aligned, _ = models
    log_local_model(base, name="svc-base", registered_model_name="svc-base", client=client)
    log_local_model(aligned, name="svc-aligned", registered_model_name="svc-aligned", client=client)
    return "models:/svc-base/1", "models:/svc-aligned/1"


@pytest.fixture
def model_name() -> str:
    return f"svc-ft-{uuid.uuid4().hex[:8]}"


def write_config(
    path: Path, pattern: str, base_uri: str, aligned_uri: str, gates: dict, *,
    retention: dict | None = None, **rule: object,
) -> Path:  # fmt: skip
    """Write an nlsr.yaml with one rule (magnitude scorer: fast and data-free) and its gate config.

    `retention` is the file's ``retention:`` block (e.g. ``{"keep_work_dir": True}`` for a test that
    reads the job's work dir after it settles).
    """
    gate_path = path.with_name(path.stem + "-gates.yaml")
    gate_path.write_text(yaml.safe_dump(gates))
    data = {
        "defaults": {"gate_limit": 2, "realign": {"scorer": "magnitude"}},
        "models": [
            {
                "match": pattern,
                "base_uri": base_uri,
                "aligned_uri": aligned_uri,
                "gate_config": str(gate_path),
                **rule,
            }
        ],
    }
    if retention is not None:
        data["retention"] = retention
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
def make_service(server, tmp_path):
    """Build an NLSRService against the session server with a fresh work dir and SQLite store."""
    from mlflow_nlsr.service import NLSRService, Settings

    def build(config: Path, **settings) -> NLSRService:
        work = settings.pop("work_dir", tmp_path / "work")
        return NLSRService(Settings(tracking_uri=server.url, work_dir=work, config=config, **settings))

    return build


@pytest.fixture
def notify_receiver():
    """Loopback HTTP receiver; answers 500 to the first `fail_first` posts, then 200."""
    seen: list[tuple[dict[str, str], bytes]] = []
    state = {"fail_first": 0}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server API
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            seen.append(({k.lower(): v for k, v in self.headers.items()}, body))
            code = 500 if len(seen) <= state["fail_first"] else 200
            self.send_response(code)
            self.end_headers()

        def log_message(self, format, *args):  # noqa: A002
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", seen, state
    server.shutdown()
    server.server_close()
