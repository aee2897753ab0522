"""A job that really ran (realign, lm-eval gates, registration) reads back on its review page under
`mlflow server --app-name nlsr`: verdict, rules, item counts from the gate run's metrics.json, the
logged plot, the report's hashes and the audit trail, all where the orchestrator put them.
"""

from __future__ import annotations

import pytest
import requests

from mlflow_nlsr import lineage
from mlflow_nlsr.registry.client import RegistryClient
from mlflow_nlsr.registry.models import log_local_model
from tests.service.conftest import STRICT, write_config

pytestmark = pytest.mark.slow


def test_a_rejected_job_reads_back_on_the_open_servers_review_page(
    server, models, references, model_name, make_service, app_store_url, tmp_path
):
    config = write_config(tmp_path / "nlsr.yaml", model_name, *references, STRICT)
    client = RegistryClient(server.url)
    _, version = log_local_model(models[2], name=model_name, registered_model_name=model_name, client=client)
    svc = make_service(config, store_url=app_store_url)  # the store the server's pages read
    outcome = svc.process_version(model_name, version.version)
    assert outcome.state == "rejected"

    page = requests.get(server.url + lineage.review_path(model_name, version.version), timeout=60)
    assert page.status_code == 200
    html = page.text
    assert "Gates FAILED" in html and "asr &lt;= -1.0" in html and "What would fix it" in html
    assert "95 % [" in html, "the gate run's metrics.json item counts were not found"
    assert "not shown" not in html
    assert "output sha256" in html and "enqueued" in html and "rejected" in html
    assert 'id="approve"' not in html
    realigned = client.get_version(model_name, outcome.realigned_version)
    assert lineage.review_path(model_name, version.version) in (realigned.description or "")
    params = {"name": model_name, "version": outcome.realigned_version, "path": "similarity.png"}
    plot = requests.get(f"{server.url}/model-versions/get-artifact", params=params, timeout=60)
    assert plot.status_code == 200 and plot.content.startswith(b"\x89PNG")
    jobs = requests.get(f"{server.url}/nlsr/", params={"model": model_name}, timeout=60).text
    assert f"{model_name} v{version.version}" in jobs and "rejected" in jobs
