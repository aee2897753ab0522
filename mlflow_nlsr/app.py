"""``mlflow server --app-name nlsr`` (or ``nlsr-auth``): MLflow's own tracking server, plus NLSR.

Adds ``POST /nlsr/webhook`` (the same receiver as ``mlflow nlsr serve``), ``GET /nlsr/health``, the
review pages under ``/nlsr/`` (:mod:`mlflow_nlsr.web`) and an ``after_request`` hook that queues every
model version created through this server — a trigger that needs no webhook, https or secret. Both
only queue jobs (milliseconds); ``mlflow nlsr worker`` processes run them. ``nlsr-auth`` is the same
behind MLflow's ``basic-auth`` login (:mod:`mlflow_nlsr.web.auth`). Configuration comes from the
environment:

* ``NLSR_STORE_URL`` — job store (default ``sqlite:///<NLSR_WORK_DIR>/jobs.db``)
* ``NLSR_WORK_DIR`` — default ``.nlsr-work``
* ``NLSR_WEBHOOK_SECRET`` — enables ``/nlsr/webhook`` (answers 503 without it)
* ``NLSR_APP_TRIGGER`` — ``1`` (default) queues versions from the after-request hook; ``0`` disables it
* ``NLSR_CONFIG`` — the nlsr.yaml rules the approve / reject buttons act under (optional)
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from mlflow.server import app as mlflow_flask_app

from mlflow_nlsr.errors import NLSRError
from mlflow_nlsr.service.intake import WebhookIntake, enqueue_version
from mlflow_nlsr.store.repository import JobStore
from mlflow_nlsr.web import WebContext
from mlflow_nlsr.web import register as register_pages
from mlflow_nlsr.web.access import BasicAuthAccess, OpenAccess
from mlflow_nlsr.web.auth import compose_with_basic_auth

log = logging.getLogger(__name__)

MV_CREATE_PATHS = frozenset(
    {"/api/2.0/mlflow/model-versions/create", "/ajax-api/2.0/mlflow/model-versions/create"}
)
_state: dict[str, Any] = {}


def _store() -> JobStore:
    if "store" not in _state:
        work = Path(os.environ.get("NLSR_WORK_DIR", ".nlsr-work"))
        work.mkdir(parents=True, exist_ok=True)
        url = os.environ.get("NLSR_STORE_URL") or f"sqlite:///{(work / 'jobs.db').resolve()}"
        _state["store"] = JobStore(url)
    return _state["store"]  # type: ignore[no-any-return]


def _intake() -> WebhookIntake | None:
    secret = os.environ.get("NLSR_WEBHOOK_SECRET")
    if not secret:
        return None
    if "intake" not in _state:
        _state["intake"] = WebhookIntake(secret=secret, store=_store())
    return _state["intake"]  # type: ignore[no-any-return]


def nlsr_webhook() -> Any:
    """Verify a delivery and queue it (202), ignore other events (200), reject bad ones (4xx)."""
    from flask import Response, request

    intake = _intake()
    if intake is None:
        status, body = 503, {"error": "NLSR_WEBHOOK_SECRET is not set on this server"}
    else:
        status, body = intake.handle(dict(request.headers), request.get_data(cache=False))
    return Response(json.dumps(body), status=status, mimetype="application/json")


def nlsr_health() -> Any:
    """Liveness of the plugin and its job store."""
    from flask import jsonify

    try:
        queued = len(_store().list_jobs(states=["queued"]))
    except NLSRError as exc:
        return jsonify({"nlsr": "error", "error": str(exc)}), 500
    return jsonify({"nlsr": "ok", "queued": queued})


def _actor() -> str:
    """Who created the version: the signed-in MLflow user under ``nlsr-auth``, else the server."""
    from flask import g

    user = getattr(g, "mlflow_authenticated_user", None)  # set only once MLflow's auth checked the password
    return f"mlflow-user:{user}" if user else "mlflow-server"


def _service() -> Any:
    """The service the approve / reject buttons act through (built on first use: it loads torch)."""
    if "service" not in _state:
        from mlflow.server import BACKEND_STORE_URI_ENV_VAR, REGISTRY_STORE_URI_ENV_VAR

        from mlflow_nlsr.service.orchestrator import NLSRService
        from mlflow_nlsr.service.settings import Settings

        config = os.environ.get("NLSR_CONFIG")
        settings = Settings(
            tracking_uri=os.environ.get(REGISTRY_STORE_URI_ENV_VAR)
            or os.environ.get(BACKEND_STORE_URI_ENV_VAR),
            work_dir=Path(os.environ.get("NLSR_WORK_DIR", ".nlsr-work")),
            config=Path(config) if config else None,
        )
        _state["service"] = NLSRService(settings, store=_store())
    return _state["service"]


def after_request(response: Any) -> Any:
    """Queue model versions created through this server (never blocks or fails the MLflow request)."""
    from flask import request

    if os.environ.get("NLSR_APP_TRIGGER", "1") == "0":
        return response
    if request.method != "POST" or request.path not in MV_CREATE_PATHS or response.status_code != 200:
        return response
    try:
        mv = json.loads(response.get_data(as_text=True))["model_version"]
        tags = {t["key"]: t["value"] for t in mv.get("tags", [])}
        enqueue_version(_store(), None, mv["name"], mv["version"], trigger="app", actor=_actor(), tags=tags)
    except (NLSRError, KeyError, ValueError, TypeError) as exc:
        log.error("nlsr: could not queue the new model version: %s", exc)
    return response


def _add_routes(app: Any, access: OpenAccess) -> None:
    if "nlsr_webhook" not in app.view_functions:
        app.add_url_rule("/nlsr/webhook", "nlsr_webhook", nlsr_webhook, methods=["POST"])
        app.add_url_rule("/nlsr/health", "nlsr_health", nlsr_health, methods=["GET"])
        app.after_request(after_request)
    register_pages(app, WebContext(store=_store, access=access, service=_service))


def create_app(app: Any = mlflow_flask_app) -> Any:
    """The ``mlflow.app`` entry point ``nlsr``: MLflow's app with the NLSR routes (ASGI under uvicorn)."""
    _add_routes(app, OpenAccess())
    if os.environ.get("_MLFLOW_SGI_NAME", "uvicorn") == "uvicorn":
        from mlflow.server.fastapi_app import create_fastapi_app

        return create_fastapi_app(app)
    return app


def create_auth_app(app: Any = mlflow_flask_app) -> Any:
    """The ``mlflow.app`` entry point ``nlsr-auth``: ``nlsr`` behind MLflow's ``basic-auth`` login.

    Same configuration file (``MLFLOW_AUTH_CONFIG_PATH``) and users as ``--app-name basic-auth``;
    needs ``pip install mlflow-nlsr[auth]``, ``MLFLOW_FLASK_SERVER_SECRET_KEY`` and, on a new user
    database, ``MLFLOW_AUTH_ADMIN_PASSWORD`` (or ``admin_password`` in the auth config).
    """
    _add_routes(app, BasicAuthAccess())
    return compose_with_basic_auth(app)
