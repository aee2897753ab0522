"""A webhook installed on a real MLflow server delivers `model_version.created` that `verify` accepts.

Installing is idempotent (one webhook per name, updated in place), the create-call tags reach the
receiver (so NLSR can skip its own versions), a forged or replayed copy of a real delivery is refused,
and a URL the server refuses is explained in terms of its webhook environment variables.
"""

from __future__ import annotations

import json
import time

import pytest

from mlflow_nlsr.errors import RegistryError, WebhookRejected
from mlflow_nlsr.registry import tags as T
from mlflow_nlsr.registry.install import install_webhook
from mlflow_nlsr.registry.models import log_local_model
from mlflow_nlsr.registry.webhook import DELIVERY_ID_HEADER, ReplayGuard, verify

SECRET = "delivery-test-secret"


@pytest.fixture(scope="module")
def installed(registry, receiver):
    """The nlsr-trigger webhook pointing at the local receiver (removed afterwards)."""
    webhook_id = install_webhook(registry, f"{receiver.url}/nlsr/webhook", SECRET)
    time.sleep(1.5)  # the test server caches webhook lists for 1 s
    yield webhook_id
    registry.delete_webhook(webhook_id)


def _created_for(name):
    def match(delivery):
        payload = json.loads(delivery.body)
        return payload.get("entity") == "model_version" and payload.get("data", {}).get("name") == name

    return match


def test_a_registration_delivers_a_signed_event_that_verify_accepts(
    registry, receiver, installed, tiny_peft_dir, model_name
):
    _, version = log_local_model(
        tiny_peft_dir, name="hooked", registered_model_name=model_name,
        version_tags={T.REALIGNED: "true", T.SOURCE_VERSION: "7"}, client=registry,
    )  # fmt: skip
    delivery = receiver.wait_for(_created_for(model_name))
    assert delivery.path == "/nlsr/webhook"
    guard = ReplayGuard()
    event = verify(SECRET, delivery.headers, delivery.body, time.time(), guard=guard)
    assert (event.event, event.name, event.version) == ("model_version.created", model_name, version.version)
    assert event.tags == {T.REALIGNED: "true", T.SOURCE_VERSION: "7"}
    assert event.delivery_id == delivery.headers[DELIVERY_ID_HEADER]

    with pytest.raises(WebhookRejected) as replay:
        verify(SECRET, delivery.headers, delivery.body, time.time(), guard=guard)
    assert replay.value.status == 409
    with pytest.raises(WebhookRejected) as forged:
        verify("wrong-secret", delivery.headers, delivery.body, time.time())
    assert forged.value.status == 401
    with pytest.raises(WebhookRejected) as stale:
        verify(SECRET, delivery.headers, delivery.body, time.time() + 3600)
    assert stale.value.status == 401


def test_installing_twice_updates_the_same_webhook(registry, receiver, installed):
    again = install_webhook(registry, f"{receiver.url}/nlsr/webhook", SECRET)
    assert again == installed
    mine = [w for w in registry.list_webhooks() if w.name == "nlsr-trigger"]
    assert [w.webhook_id for w in mine] == [installed]
    assert mine[0].events == ("model_version.created",) and mine[0].status == "ACTIVE"
    assert not hasattr(mine[0], "secret")


def test_reinstalling_with_a_new_url_moves_the_webhook(registry, receiver):
    first = install_webhook(registry, f"{receiver.url}/old", SECRET, name="nlsr-move")
    moved = install_webhook(registry, f"{receiver.url}/new", SECRET, name="nlsr-move")
    try:
        assert moved == first
        assert [w.url for w in registry.list_webhooks() if w.name == "nlsr-move"] == [f"{receiver.url}/new"]
    finally:
        registry.delete_webhook(first)
    assert all(w.name != "nlsr-move" for w in registry.list_webhooks())


def test_a_refused_url_explains_the_server_env_vars(registry):
    with pytest.raises(RegistryError, match=r"MLFLOW_WEBHOOK_ALLOWED_SCHEMES=http,https.*ALLOW_PRIVATE_IPS"):
        install_webhook(registry, "ftp://127.0.0.1/hook", SECRET, name="nlsr-bad-url")


def test_an_empty_secret_is_refused_before_calling_mlflow(registry):
    with pytest.raises(RegistryError, match="non-empty secret"):
        install_webhook(registry, "http://127.0.0.1:1/hook", "")
