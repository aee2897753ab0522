"""Thin MLflow adapter: model URIs, raw LoggedModel logging, registry tags/aliases, webhooks.

The only package (with ``service`` and ``app``) that imports mlflow. Names are re-exported lazily so
that ``mlflow_nlsr.registry.webhook`` (pure stdlib) can be imported without loading mlflow.
"""

from __future__ import annotations

from mlflow_nlsr._lazy import lazy_exports

_EXPORTS = {
    "RegistryClient": "client",
    "VersionInfo": "client",
    "WebhookInfo": "client",
    "is_realigned": "client",
    "log_local_model": "models",
    "install_webhook": "install",
    "ReferenceCache": "cache",
    "ModelRef": "uris",
    "parse_model_uri": "uris",
    "resolve_to_local": "uris",
    "find_model_dir": "uris",
    "model_id_from_source": "uris",
    "WebhookEvent": "webhook",
    "ReplayGuard": "webhook",
    "sign": "webhook",
    "verify": "webhook",
    "parse_event": "webhook",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
