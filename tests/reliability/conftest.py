"""Reliability fixtures: one `mlflow server --app-name nlsr` for the suite, tiny models, tiny gates."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests import factories
from tests.mlflow_server import nlsr_app_server

#: the secret of the session server's /nlsr/webhook route (NLSR_WEBHOOK_SECRET)
APP_SECRET = "app-plugin-secret-do-not-log-0xC0FFEE"
#: ultra-light gates: one safety item per model, a rule every model passes
TINY_GATES = {"suites": ["safety"], "judge": "keyword", "limit": 1, "rules": ["asr <= 1.0"]}


@dataclass(frozen=True)
class Trio:
    """Local dirs of a base model, its aligned adapter and a fine-tuned adapter that continues it."""

    base: Path
    aligned: Path
    finetuned: Path


@pytest.fixture(scope="session")
def good(tmp_path_factory) -> Trio:
    """A consistent (base, aligned r=4, fine-tuned) trio; every bad input is derived from it."""
    return Trio(*factories.make_model_trio(tmp_path_factory.mktemp("rel-models")))


@pytest.fixture(scope="session")
def app_store_url(tmp_path_factory) -> str:
    """The job store the session server's app plugin queues into."""
    return f"sqlite:///{tmp_path_factory.mktemp('rel-app-store') / 'jobs.db'}"


@pytest.fixture(scope="session")
def server(tmp_path_factory, app_store_url):
    """`mlflow server --app-name nlsr` on loopback; its /nlsr/webhook verifies with APP_SECRET."""
    with nlsr_app_server(tmp_path_factory.mktemp("rel-server"), app_store_url, APP_SECRET) as srv:
        yield srv


@pytest.fixture
def model_name() -> str:
    return f"rel-{uuid.uuid4().hex[:10]}"


def write_rules(path: Path, gates: dict, *, pattern: str = "rel-*", realign: dict | None = None) -> Path:
    """Write an nlsr.yaml whose one rule takes its references from version tags, plus its gate config."""
    gate_path = path.with_name(path.stem + "-gates.yaml")
    gate_path.write_text(yaml.safe_dump(gates))
    data = {
        "defaults": {"gate_limit": 1, "realign": {"scorer": "magnitude", **(realign or {})}},
        "models": [{"match": pattern, "gate_config": str(gate_path)}],
    }
    path.write_text(yaml.safe_dump(data))
    return path


def register(url: str, directory: Path, name: str, **tags: str) -> str:
    """Log `directory` as a LoggedModel, register it as a new version of `name`; return the version."""
    from mlflow_nlsr.registry.client import RegistryClient
    from mlflow_nlsr.registry.models import log_local_model

    _, version = log_local_model(
        directory, name=name, registered_model_name=name, version_tags=tags, client=RegistryClient(url)
    )
    assert version is not None
    return version.version


def leftovers(directory: Path) -> list[str]:
    """Names of partial outputs (atomic-writer temp dirs) anywhere under `directory`."""
    if not directory.exists():
        return []
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*") if ".tmp-" in p.name)
