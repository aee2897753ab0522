"""Install (create or update) the MLflow registry webhook that triggers NLSR."""

from __future__ import annotations

from collections.abc import Sequence

from mlflow_nlsr.errors import RegistryError
from mlflow_nlsr.registry.client import RegistryClient

DEFAULT_NAME = "nlsr-trigger"
DEFAULT_EVENTS = ("model_version.created",)

_URL_HELP = (
    "The MLflow tracking server refused the webhook URL. By default it only accepts https URLs that "
    "resolve to public IP addresses. For an http receiver or one on a private/loopback address, start "
    "`mlflow server` with MLFLOW_WEBHOOK_ALLOWED_SCHEMES=http,https and "
    "MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS=true "
    "(and always MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY=<Fernet key> so secrets survive restarts)."
)


def install_webhook(
    client: RegistryClient,
    url: str,
    secret: str,
    name: str = DEFAULT_NAME,
    events: Sequence[str] = DEFAULT_EVENTS,
    description: str | None = "NLSR realignment trigger (mlflow-nlsr)",
) -> str:
    """Create the webhook, or update the existing one named ``name`` (or with this ``url``); return its id.

    Idempotent: a second call with the same arguments changes nothing but the (re-sent) secret. A URL
    MLflow refuses raises RegistryError explaining the server's webhook environment variables.
    """
    if not secret:
        raise RegistryError("install_webhook needs a non-empty secret: unsigned deliveries are refused")
    hooks = client.list_webhooks()
    existing = [w for w in hooks if w.name == name] or [w for w in hooks if w.url == url]
    try:
        if existing:
            return client.update_webhook(
                existing[0].webhook_id, url=url, events=events, secret=secret, description=description
            ).webhook_id
        return client.create_webhook(name, url, events, secret=secret, description=description).webhook_id
    except RegistryError as exc:
        if "webhook url" in str(exc).lower() or "public ip" in str(exc).lower():
            raise RegistryError(f"{exc}\n{_URL_HELP}") from exc
        raise
