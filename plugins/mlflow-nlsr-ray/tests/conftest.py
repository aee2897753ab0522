"""A real Ray cluster on loopback for the executor tests, started here and stopped at the end."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
if str(REPO) not in sys.path:  # the core's test fixtures (tests.service.conftest) when run alone
    sys.path.insert(0, str(REPO))

from tests.service.conftest import app_store_url, models, references, server  # noqa: E402,F401


@pytest.fixture(scope="session")
def ray_address():
    """Address of a 2-CPU Ray head on 127.0.0.1 (no dashboard, 200 MB object store)."""
    from mlflow_nlsr_ray.cluster import local_cluster

    with local_cluster(num_cpus=2) as address:
        yield address
