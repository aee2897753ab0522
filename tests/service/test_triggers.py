"""Every trigger ends in exactly one realigned version: the webhook, the poller and the app plugin.

Against the session's real `mlflow server --app-name nlsr` (SQLite backend, webhooks enabled).
"""

from __future__ import annotations

import threading
import time
from http.server import ThreadingHTTPServer

import pytest
from click.testing import CliRunner

from mlflow_nlsr.cli import cli
from mlflow_nlsr.registry.client import RegistryClient
from mlflow_nlsr.registry.install import install_webhook
from mlflow_nlsr.service.intake import WebhookIntake
from mlflow_nlsr.store.repository import JobStore
from tests.service.conftest import PERMISSIVE, write_config

pytestmark = pytest.mark.slow


def _log_model(server, path, name, *tags):
    args = ["log-model", str(path), "--name", name, "--tracking-uri", server.url, "--json"]
    for tag in tags:
        args += ["--tag", tag]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    return result


def _wait(predicate, timeout=90.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError("condition not met in time")


def _one_realigned(client, name):
    versions = client.search_versions(f"name = '{name}'")
    realigned = [v for v in versions if v.tags.get("nlsr.realigned") == "true"]
    assert len(realigned) == 1, [v.tags for v in versions]
    return realigned[0]


def test_a_signed_webhook_delivery_leads_to_exactly_one_realigned_version(
    server, models, references, model_name, make_service, tmp_path
):
    svc = make_service(write_config(tmp_path / "nlsr.yaml", model_name, *references, PERMISSIVE))
    intake = WebhookIntake(secret="hook-secret", store=svc.store, client=svc.client)
    from mlflow_nlsr.cli.triggers import make_handler

    receiver = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(intake))
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    client = RegistryClient(server.url)
    hook = install_webhook(
        client,
        f"http://127.0.0.1:{receiver.server_port}/nlsr/webhook",
        "hook-secret",
        name=f"hook-{model_name}",
    )
    try:
        time.sleep(1.5)  # the server caches its webhook list for 1 s in tests
        _log_model(server, models[2], model_name)
        job = _wait(lambda: svc.store.get(model_name, "1"))
        assert str(job.trigger) == "webhook"
        outcomes = svc.work(max_jobs=1, idle_exit_s=1, poll_interval_s=0.2)
    finally:
        client.delete_webhook(hook)
        receiver.shutdown()
    assert [o.state for o in outcomes] == ["promoted"]
    realigned = _one_realigned(client, model_name)
    assert client.get_alias_version(model_name, "safe").version == realigned.version
    time.sleep(1.0)  # the realigned version's own delivery (if any) must not queue a job
    assert len(svc.store.list_jobs(model_name)) == 1


def test_the_poller_picks_up_versions_no_trigger_reported(
    server, models, references, model_name, make_service, tmp_path
):
    svc = make_service(write_config(tmp_path / "nlsr.yaml", model_name, *references, PERMISSIVE))
    _log_model(server, models[2], model_name)
    assert svc.store.get(model_name, "1") is None  # this store heard no webhook

    queued = svc.poll_once(name_glob=model_name, since="all")  # registered before the poller started
    assert [(j.model_name, j.version) for j in queued] == [(model_name, "1")]
    assert svc.poll_once(name_glob=model_name) == []  # tagged queued: not queued twice
    outcomes = svc.work(max_jobs=1, idle_exit_s=1, poll_interval_s=0.2)

    assert [o.state for o in outcomes] == ["promoted"]
    _one_realigned(RegistryClient(server.url), model_name)
    assert svc.poll_once(name_glob=model_name) == []  # the realigned version carries a status of its own


def test_the_app_plugin_queues_versions_created_through_the_server(
    server, models, references, model_name, make_service, app_store_url, tmp_path
):
    _log_model(
        server, models[2], model_name, f"nlsr.base_uri={references[0]}", f"nlsr.aligned_uri={references[1]}"
    )
    app_store = JobStore(app_store_url)
    job = _wait(lambda: app_store.get(model_name, "1"))
    assert str(job.trigger) == "app"

    gates = tmp_path / "nlsr.yaml"
    write_config(gates, "nothing-matches", *references, PERMISSIVE)
    svc = make_service(gates, store_url=app_store_url, gate_limit=1)
    outcome = svc.process_version(model_name, "1")

    assert outcome.state in {"promoted", "rejected"}  # the shipped default gates decide
    realigned = _one_realigned(RegistryClient(server.url), model_name)
    assert app_store.get(model_name, realigned.version) is None, "realigned versions never queue a job"
