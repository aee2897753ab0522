"""Cheap trigger paths: queue a version, or verify a webhook delivery and queue it. Never realign here.

Kept free of torch, lm-eval and the pipeline so the webhook receiver and the ``mlflow server`` app
plugin start fast and answer MLflow within milliseconds.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass

from mlflow_nlsr import lineage
from mlflow_nlsr.errors import NLSRError, WebhookRejected
from mlflow_nlsr.registry.client import RegistryClient
from mlflow_nlsr.registry.webhook import ReplayGuard, verify
from mlflow_nlsr.store.repository import JobStore
from mlflow_nlsr.store.tables import Job

log = logging.getLogger(__name__)


def enqueue_version(
    store: JobStore,
    client: RegistryClient | None,
    name: str,
    version: str | int,
    *,
    trigger: str,
    actor: str,
    tags: Mapping[str, str] | None = None,
    registered_by: str | None = None,
) -> Job | None:
    """Queue a job unless the version is one NLSR registered itself (loop prevention); tag it queued."""
    if tags is not None and tags.get(lineage.REALIGNED) == "true":
        store.audit(
            "ignored", actor=actor, model_name=name, version=version,
            inputs={"trigger": trigger}, reasons=["version was registered by NLSR"],
        )  # fmt: skip
        return None
    job, created = store.enqueue(name, version, trigger, actor, registered_by=registered_by)
    if created and client is not None:
        try:
            client.set_version_tags(name, version, {lineage.STATUS: "queued"})
        except NLSRError as exc:  # the job is queued either way; the tag is only for the UI
            log.warning("could not tag %s/%s as queued: %s", name, version, exc)
    return job


@dataclass
class WebhookIntake:
    """Verify MLflow webhook deliveries and queue ``model_version.created`` events."""

    secret: str
    store: JobStore
    client: RegistryClient | None = None
    guard: ReplayGuard | None = None
    max_age: int = 300
    max_bytes: int = 1_000_000

    def __post_init__(self) -> None:
        if self.guard is None:
            self.guard = ReplayGuard(ttl=2 * self.max_age)

    def handle(self, headers: Mapping[str, str], body: bytes, now: float | None = None) -> tuple[int, dict]:
        """Return (HTTP status, JSON body): 202 queued, 200 ignored, 4xx rejected (nothing queued)."""
        try:
            event = verify(
                self.secret, headers, body, time.time() if now is None else now,
                max_age=self.max_age, max_bytes=self.max_bytes, guard=self.guard,
            )  # fmt: skip
        except WebhookRejected as exc:
            log.info("webhook rejected (%s): %s", exc.status, exc)
            return exc.status, {"error": str(exc)}
        if event.ignorable or event.name is None or event.version is None:
            return 200, {"ignored": event.event}
        try:
            job = enqueue_version(
                self.store, self.client, event.name, event.version,
                trigger="webhook", actor=f"webhook:{event.delivery_id}", tags=event.tags,
            )  # fmt: skip
        except NLSRError as exc:
            if self.guard is not None and event.delivery_id:
                self.guard.forget(event.delivery_id)  # let MLflow's retry through
            log.error("could not queue %s/%s: %s", event.name, event.version, exc)
            return 503, {"error": f"could not queue the job: {exc}"}
        if job is None:
            return 200, {"ignored": "version registered by NLSR"}
        return 202, {"queued": {"model": event.name, "version": event.version, "job_id": job.id}}


def json_body(data: dict) -> bytes:
    """Encode a response body."""
    return json.dumps(data).encode("utf-8")
