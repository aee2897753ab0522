"""``mlflow server --app-name nlsr``: MLflow's own tracking server, plus NLSR's triggers.

Adds ``POST /nlsr/webhook`` (the same receiver as ``mlflow nlsr serve``), ``GET /nlsr/health`` and an
``after_request`` hook that queues every model version created through this server — a trigger that
needs no webhook, https or secret. Both only queue jobs (milliseconds); ``mlflow nlsr worker``
processes run them. Configuration comes from the environment:

* ``NLSR_STORE_URL`` — job store (default ``sqlite:///<NLSR_WORK_DIR>/jobs.db``)
* ``NLSR_WORK_DIR`` — default ``.nlsr-work``
* ``NLSR_WEBHOOK_SECRET`` — enables ``/nlsr/webhook`` (answers 503 without it)
* ``NLSR_APP_TRIGGER`` — ``1`` (default) queues versions from the after-request hook; ``0`` disables it
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
        enqueue_version(
            _store(), None, mv["name"], mv["version"], trigger="app", actor="mlflow-server", tags=tags
        )
    except (NLSRError, KeyError, ValueError, TypeError) as exc:
        log.error("nlsr: could not queue the new model version: %s", exc)
    return response


def create_app(app: Any = mlflow_flask_app) -> Any:
    """The ``mlflow.app`` entry point: MLflow's app with the NLSR routes (ASGI under uvicorn)."""
    if "nlsr_webhook" not in app.view_functions:
        app.add_url_rule("/nlsr/webhook", "nlsr_webhook", nlsr_webhook, methods=["POST"])
        app.add_url_rule("/nlsr/health", "nlsr_health", nlsr_health, methods=["GET"])
        app.after_request(after_request)
    if os.environ.get("_MLFLOW_SGI_NAME", "uvicorn") == "uvicorn":
        from mlflow.server.fastapi_app import create_fastapi_app

        return create_fastapi_app(app)
    return app
