"""Verify and parse MLflow registry webhook deliveries (pure: standard library only).

MLflow 3.17 signs a delivery with HMAC-SHA256 over ``"{delivery_id}.{timestamp}.{body}"`` and sends
``X-MLflow-Signature: v1,<base64>`` with ``X-MLflow-Delivery-Id`` and ``X-MLflow-Timestamp``
(``mlflow/webhooks/delivery.py``; shared/docs/mlflow-notes.md §1.5). :func:`verify` is a pure
function of ``(secret, headers, raw_body, now)``; it never logs and never echoes the secret.

Status codes carried by :class:`~mlflow_nlsr.errors.WebhookRejected`:

* 413: body larger than ``max_bytes`` (checked first, before any hashing);
* 401: missing, unknown-scheme or wrong signature; **stale or future timestamp** (older than
  ``max_age`` seconds or more than ``max_age`` ahead). A stale delivery is an authentication
  failure (it might be a captured replay), not a slow request, so 401 rather than 408 — and MLflow
  does not retry on 401, which is what we want for a replay;
* 400: malformed delivery-id/timestamp headers, or a body that is not a JSON object envelope;
* 409: a delivery id seen before (:class:`ReplayGuard`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mlflow_nlsr.errors import ConfigError, WebhookRejected

SIGNATURE_HEADER = "X-MLflow-Signature"
TIMESTAMP_HEADER = "X-MLflow-Timestamp"
DELIVERY_ID_HEADER = "X-MLflow-Delivery-Id"
SIGNATURE_VERSION = "v1"

ACTIONABLE_EVENTS = frozenset({"model_version.created"})

_DELIVERY_ID_RE = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_TIMESTAMP_RE = re.compile(r"[0-9]{1,12}")
_VERSION_RE = re.compile(r"[0-9]{1,18}")
_MAX_SIGNATURES = 8


@dataclass(frozen=True)
class WebhookEvent:
    """One verified delivery: ``entity.action`` plus the model name/version it is about."""

    entity: str
    action: str
    name: str | None
    version: str | None
    tags: Mapping[str, str] = field(default_factory=dict)
    delivery_id: str | None = None
    timestamp: int | None = None
    data: Mapping[str, Any] = field(default_factory=dict)

    @property
    def event(self) -> str:
        """Return the MLflow event name, e.g. ``model_version.created``."""
        return f"{self.entity}.{self.action}"

    @property
    def ignorable(self) -> bool:
        """True for events NLSR does not act on (anything but a complete ``model_version.created``)."""
        return self.event not in ACTIONABLE_EVENTS or self.name is None or self.version is None


def sign(secret: str, delivery_id: str, timestamp: str | int, body: bytes | str) -> str:
    """Return the ``v1,<base64>`` signature MLflow would send for this delivery."""
    raw = body.encode("utf-8") if isinstance(body, str) else body
    mac = hmac.new(secret.encode("utf-8"), _signed_content(delivery_id, str(timestamp), raw), hashlib.sha256)
    return f"{SIGNATURE_VERSION},{base64.b64encode(mac.digest()).decode('ascii')}"


def verify(
    secret: str,
    headers: Mapping[str, str],
    raw_body: bytes,
    now: float,
    *,
    max_age: int = 300,
    max_bytes: int = 1_000_000,
    guard: ReplayGuard | None = None,
) -> WebhookEvent:
    """Check size, signature and freshness of one delivery and return its parsed event.

    Raises WebhookRejected (413/401/400, and 409 through ``guard``) — never anything else for any
    headers or body. ``guard`` is consulted only after the signature checks out, so forged requests
    cannot poison it. An empty ``secret`` is a server misconfiguration (ConfigError).
    """
    if not secret:
        raise ConfigError("webhook secret is empty: expected the secret configured on the MLflow webhook")
    if not isinstance(raw_body, bytes | bytearray):
        raise WebhookRejected(f"expected the raw request body as bytes, got {type(raw_body).__name__}", 400)
    if len(raw_body) > max_bytes:
        raise WebhookRejected(f"body of {len(raw_body)} bytes exceeds the {max_bytes}-byte limit", 413)
    lowered = _lower_headers(headers)
    signature = lowered.get(SIGNATURE_HEADER.lower())
    if not signature:
        raise WebhookRejected(f"missing {SIGNATURE_HEADER} header: unsigned deliveries are refused", 401)
    delivery_id = lowered.get(DELIVERY_ID_HEADER.lower(), "")
    if not _DELIVERY_ID_RE.fullmatch(delivery_id):
        raise WebhookRejected(f"malformed or missing {DELIVERY_ID_HEADER} header", 400)
    timestamp = lowered.get(TIMESTAMP_HEADER.lower(), "")
    if not _TIMESTAMP_RE.fullmatch(timestamp):
        raise WebhookRejected(f"malformed or missing {TIMESTAMP_HEADER} header: expected unix seconds", 400)
    expected = sign(secret, delivery_id, timestamp, bytes(raw_body)).encode("ascii")
    if not _any_signature_matches(signature, expected):
        raise WebhookRejected(f"{SIGNATURE_HEADER} does not match (expected a valid v1 HMAC-SHA256)", 401)
    age = now - int(timestamp)
    if age > max_age or age < -max_age:
        raise WebhookRejected(
            f"stale delivery: timestamp is {int(age)} s from now, allowed window is ±{max_age} s", 401
        )
    payload = _load_json(bytes(raw_body))
    event = parse_event(payload, delivery_id=delivery_id, timestamp=int(timestamp))
    if guard is not None:
        guard.check_and_remember(delivery_id, now)
    return event


def parse_event(
    payload: Any, *, delivery_id: str | None = None, timestamp: int | None = None
) -> WebhookEvent:
    """Turn a decoded MLflow envelope ``{entity, action, timestamp, data}`` into a WebhookEvent.

    Every ``entity.action`` is accepted (non-``model_version.created`` events come back
    ``ignorable``); a malformed envelope, or a ``model_version.created`` without a name and
    version, raises WebhookRejected(400).
    """
    if not isinstance(payload, dict):
        raise WebhookRejected(f"expected a JSON object envelope, got {type(payload).__name__}", 400)
    entity, action, data = payload.get("entity"), payload.get("action"), payload.get("data", {})
    if not isinstance(entity, str) or not isinstance(action, str) or not entity or not action:
        raise WebhookRejected("envelope lacks string 'entity' and 'action' fields", 400)
    if not isinstance(data, dict):
        raise WebhookRejected(f"envelope 'data' must be an object, got {type(data).__name__}", 400)
    name = _opt_str(data.get("name"), "name")
    if name is not None and not name.strip():
        raise WebhookRejected(f"data.name must be a registered model name, found {name!r}", 400)
    version = _opt_version(data.get("version"))
    tags = _tags(data.get("tags"))
    if f"{entity}.{action}" in ACTIONABLE_EVENTS and (name is None or version is None):
        raise WebhookRejected(f"{entity}.{action} payload lacks data.name or data.version", 400)
    return WebhookEvent(
        entity=entity,
        action=action,
        name=name,
        version=version,
        tags=tags,
        delivery_id=delivery_id,
        timestamp=timestamp,
        data=data,
    )


class ReplayGuard:
    """In-memory TTL set of delivery ids; a second sighting inside ``ttl`` seconds is a replay (409).

    Bounded to ``max_entries`` (oldest evicted). ``ttl`` should be at least twice :func:`verify`'s
    ``max_age`` so a replay is caught for as long as its timestamp would still pass.
    """

    def __init__(self, ttl: float = 600.0, max_entries: int = 100_000) -> None:
        if ttl <= 0 or max_entries <= 0:
            raise ConfigError(f"ReplayGuard needs ttl > 0 and max_entries > 0, got {ttl}, {max_entries}")
        self.ttl = ttl
        self.max_entries = max_entries
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def check_and_remember(self, delivery_id: str, now: float) -> None:
        """Remember ``delivery_id`` at ``now``; raise WebhookRejected(409) if it is already known."""
        with self._lock:
            self._expire(now)
            if delivery_id in self._seen:
                raise WebhookRejected(f"delivery {delivery_id} was already received (replay)", 409)
            self._seen[delivery_id] = now
            while len(self._seen) > self.max_entries:
                self._seen.popitem(last=False)

    def forget(self, delivery_id: str) -> None:
        """Drop ``delivery_id`` so MLflow's retry is accepted (use when enqueueing failed)."""
        with self._lock:
            self._seen.pop(delivery_id, None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._seen)

    def _expire(self, now: float) -> None:
        while self._seen:
            oldest_id, seen_at = next(iter(self._seen.items()))
            if now - seen_at <= self.ttl:
                break
            del self._seen[oldest_id]


def _signed_content(delivery_id: str, timestamp: str, body: bytes) -> bytes:
    return delivery_id.encode("utf-8") + b"." + timestamp.encode("utf-8") + b"." + body


def _lower_headers(headers: Mapping[str, str]) -> dict[str, str]:
    try:
        items = list(headers.items())
    except (AttributeError, TypeError) as exc:
        raise WebhookRejected("headers are not a mapping", 400) from exc
    out: dict[str, str] = {}
    for key, value in items:
        if isinstance(key, str) and isinstance(value, str):
            out[key.lower()] = value.strip()
    return out


def _any_signature_matches(header: str, expected: bytes) -> bool:
    # Standard-Webhooks style: several space-separated signatures are allowed (key rotation).
    matched = False
    for candidate in header.split(" ")[:_MAX_SIGNATURES]:
        if not candidate.startswith(f"{SIGNATURE_VERSION},") or not candidate.isascii():
            continue
        matched |= hmac.compare_digest(candidate.encode("ascii"), expected)
    return matched


def _load_json(raw: bytes) -> Any:
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise WebhookRejected(f"body is not valid UTF-8 JSON: {type(exc).__name__}", 400) from exc


def _opt_str(value: Any, what: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise WebhookRejected(f"data.{what} must be a string, got {type(value).__name__}", 400)
    return value


def _opt_version(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise WebhookRejected(f"data.version must be a string, got {type(value).__name__}", 400)
    text = str(value)
    if not _VERSION_RE.fullmatch(text):
        raise WebhookRejected(f"data.version must be a positive integer string, got {text[:20]!r}", 400)
    return text


def _tags(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise WebhookRejected(f"data.tags must be an object, got {type(value).__name__}", 400)
    return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in value.items()}
