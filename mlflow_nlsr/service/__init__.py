"""The one orchestrator: an idempotent, resumable ``process_version(name, version)``.

Every trigger (webhook receiver, ``mlflow server --app-name nlsr``, the poller, ``mlflow nlsr run``)
ends in :class:`NLSRService`. See :mod:`mlflow_nlsr.service.orchestrator` for the job's steps. Names are
loaded lazily: the webhook receiver and the app plugin import only :mod:`.intake` and stay free of
torch and lm-eval.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "NLSRService": "orchestrator",
    "LeaseLost": "heartbeat",
    "Outcome": "settings",
    "Settings": "settings",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'mlflow_nlsr.service' has no attribute {name!r}")
    return getattr(importlib.import_module(f"mlflow_nlsr.service.{module}"), name)
