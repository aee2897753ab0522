"""Outgoing notifications (``notify:`` in nlsr.yaml): a job awaits approval, is promoted, rejected, failed.

Each target gets one JSON POST per event, with a Slack-compatible ``text`` field, signed the way MLflow
signs its own webhooks (``X-MLflow-Signature: v1,<base64 HMAC-SHA256 of "delivery_id.timestamp.body">``,
``X-MLflow-Delivery-Id``, ``X-MLflow-Timestamp``; registry/webhook.py ``sign``) when the target names a
``secret_env``. A delivery is retried with exponential backoff; one that still fails is audited
(``notify-failed``) and never raised: the job's state is already final when its notification goes out.
"""

from __future__ import annotations

import json
import logging
import os
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mlflow_nlsr.registry.webhook import DELIVERY_ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from mlflow_nlsr.rules import NotifyTarget
from mlflow_nlsr.store.repository import JobStore
from mlflow_nlsr.store.tables import Job

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Delivery:
    """How hard to try: attempts per target, first backoff (doubled each retry), request timeout."""

    attempts: int = 3
    backoff_s: float = 0.5
    timeout_s: float = 5.0


def payload(job: Job, actor: str | None = None, reasons: Sequence[str] | None = None) -> dict[str, Any]:
    """The JSON body for one job event (``reasons`` default to the job's own)."""
    result = job.result if isinstance(job.result, dict) else {}
    if reasons is None:
        reasons = list(result.get("reasons") or ([job.last_error] if job.last_error else []))
    state = job.state.value
    text = f"NLSR: {job.model_name} v{job.version} is {state}"
    if job.realigned_version:
        text += f" (realigned version {job.realigned_version})"
    if reasons:
        text += f": {reasons[0]}"
    return {
        "text": text,
        "event": state,
        "model_name": job.model_name,
        "version": job.version,
        "job_id": job.id,
        "realigned_version": job.realigned_version,
        "reasons": list(reasons),
        "registered_by": job.registered_by,
        "approved_by": job.approved_by,
        "actor": actor,
    }


def notify_job(
    store: JobStore,
    targets: Sequence[NotifyTarget],
    job: Job,
    *,
    actor: str | None = None,
    delivery: Delivery | None = None,
    reasons: Sequence[str] | None = None,
) -> int:
    """Send the job's state to every target subscribed to it; return how many got it."""
    delivered = 0
    for target in targets:
        if job.state.value not in target.events:
            continue
        error = _send(target, payload(job, actor, reasons), delivery or Delivery())
        if error is None:
            delivered += 1
            continue
        log.warning("notification to %s failed: %s", target.url, error)
        try:
            store.audit(
                "notify-failed", actor=actor or "nlsr-notify", model_name=job.model_name, version=job.version,
                job_id=job.id, inputs={"url": target.url, "event": job.state.value}, reasons=[error],
            )  # fmt: skip
        except Exception as exc:  # noqa: BLE001 - a notification never fails the job
            log.warning("could not audit the failed notification: %s", exc)
    return delivered


def _send(target: NotifyTarget, body_data: dict[str, Any], delivery: Delivery) -> str | None:
    """POST with retries; None on a 2xx answer, else the last error."""
    body = json.dumps(body_data, sort_keys=True).encode()
    delivery_id, error = str(uuid.uuid4()), "not attempted"
    timestamp = str(int(time.time()))  # one id and timestamp for every retry, as MLflow's deliveries
    for attempt in range(max(1, delivery.attempts)):
        if attempt:
            time.sleep(delivery.backoff_s * 2 ** (attempt - 1))
        headers = {
            "Content-Type": "application/json",
            DELIVERY_ID_HEADER: delivery_id,
            TIMESTAMP_HEADER: timestamp,
        }
        secret = os.environ.get(target.secret_env) if target.secret_env else None
        if secret:
            headers[SIGNATURE_HEADER] = sign(secret, delivery_id, timestamp, body)
        request = urllib.request.Request(target.url, data=body, headers=headers, method="POST")  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=delivery.timeout_s) as response:  # noqa: S310
                if 200 <= response.status < 300:
                    return None
                error = f"HTTP {response.status}"
        except urllib.error.HTTPError as exc:
            error = f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError) as exc:
            error = f"{type(exc).__name__}: {exc}"
    return f"{error} after {delivery.attempts} attempt(s)"
