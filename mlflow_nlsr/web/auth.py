"""Compose NLSR with MLflow's ``basic-auth`` app: one login for MLflow and the ``/nlsr/`` routes.

MLflow's auth app installs one ``before_request`` check. Its fail-closed default refuses every route
it has no validator for (``/nlsr/…`` included) to non-admins, and it would ask a webhook delivery for
a password. So that one check is wrapped: ``/nlsr/webhook`` is authenticated by its HMAC signature
only, every other ``/nlsr/`` route needs a valid MLflow login (the pages then check READ / MANAGE on
the registered model themselves), and all other paths go to MLflow's check unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mlflow_nlsr.errors import ConfigError

WEBHOOK_PATH = "/nlsr/webhook"
PREFIX = "/nlsr"


def _nlsr_gate(mlflow_check: Callable[[], Any]) -> Callable[[], Any]:
    from flask import Response, g, request
    from mlflow.server import auth as mlflow_auth

    def nlsr_auth_before_request() -> Any:
        path = request.path
        if path == WEBHOOK_PATH:
            return None  # the receiver verifies the HMAC signature and answers 4xx itself
        if path == PREFIX or path.startswith(PREFIX + "/"):
            authorization = mlflow_auth.authenticate_request()
            if isinstance(authorization, Response):
                return authorization
            g.mlflow_authenticated_user = authorization.username
            return None
        return mlflow_check()

    return nlsr_auth_before_request


def compose_with_basic_auth(app: Any) -> Any:
    """Run MLflow's ``basic-auth`` ``create_app`` on ``app`` (NLSR routes already added); return it."""
    from mlflow.server import auth as mlflow_auth

    composed = mlflow_auth.create_app(app)
    checks = app.before_request_funcs.setdefault(None, [])
    if mlflow_auth._before_request not in checks:
        raise ConfigError(
            "MLflow's basic-auth app did not install its before_request check where NLSR expects it; "
            "this MLflow version is not supported by --app-name nlsr-auth"
        )
    checks[:] = [_nlsr_gate(f) if f is mlflow_auth._before_request else f for f in checks]
    return composed
