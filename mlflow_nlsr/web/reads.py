"""Reads from the MLflow server the pages live in, through its own REST routes, as the signed-in user.

Each read is an in-process request to the Flask app (no network, no second client) that carries the
browser's ``Authorization`` header, so MLflow's own permission checks decide what a page may show:
a reviewer sees on an NLSR page only what MLflow would show them anyway.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

log = logging.getLogger(__name__)

REPORT_NAME = "nlsr_report.json"
PLOT_NAME = "similarity.png"
GATE_METRICS = "realigned/metrics.json"


@dataclass(frozen=True)
class Fetched:
    """The body of one read, or why there is none (HTTP status and message)."""

    status: int
    body: bytes

    @property
    def ok(self) -> bool:
        """True for a 2xx answer."""
        return 200 <= self.status < 300

    def json(self) -> Any:
        """The body parsed as JSON (None when it is not)."""
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    def error(self) -> str:
        """A one-line reason for a failed read."""
        text = self.body.decode("utf-8", "replace").strip().splitlines()
        return f"HTTP {self.status}: {text[0][:200] if text else ''}"


class ServerReads:
    """Registry, run and artifact reads through the app's REST routes with the caller's credentials."""

    def __init__(self, app: Any, headers: dict[str, str]) -> None:
        self._client = app.test_client()
        self._headers = headers

    def _get(self, path: str, params: dict[str, str]) -> Fetched:
        resp = self._client.get(f"{path}?{urlencode(params)}", headers=self._headers)
        return Fetched(resp.status_code, resp.get_data())

    def model_version(self, name: str, version: str) -> Fetched:
        """``GET model-versions/get``: the version's tags, source, description and creator."""
        return self._get("/api/2.0/mlflow/model-versions/get", {"name": name, "version": version})

    def version_artifact(self, name: str, version: str, path: str) -> Fetched:
        """One file of a registered version's artifacts (the realigned dir: report, plot)."""
        return self._get("/model-versions/get-artifact", {"name": name, "version": version, "path": path})

    def gate_run_id(self, run_name: str) -> str | None:
        """The newest run named ``run_name`` (the job's gate run), or None."""
        body = {
            "experiment_ids": ["0"],
            "filter": f"attributes.run_name = '{run_name}'",
            "order_by": ["attributes.start_time DESC"],
            "max_results": 1,
        }
        resp = self._client.post("/api/2.0/mlflow/runs/search", json=body, headers=self._headers)
        runs = (resp.get_json(silent=True) or {}).get("runs") or []
        return str(runs[0]["info"]["run_id"]) if resp.status_code == 200 and runs else None

    def run_artifact(self, run_id: str, path: str) -> Fetched:
        """One file of a run's artifacts."""
        return self._get("/get-artifact", {"run_uuid": run_id, "path": path})


def plot_url(name: str, version: str) -> str:
    """Where the browser loads the realigned version's similarity plot (MLflow's own artifact route)."""
    return "/model-versions/get-artifact?" + urlencode({"name": name, "version": version, "path": PLOT_NAME})


def mlflow_version_url(name: str, version: str) -> str:
    """The version's page in MLflow's own UI."""
    return f"/#/models/{quote(name, safe='')}/versions/{quote(str(version), safe='')}"
