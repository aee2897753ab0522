"""The one orchestrator: an idempotent, resumable ``process_version(name, version)``.

Every trigger (webhook receiver, ``mlflow server --app-name nlsr``, the poller, ``mlflow nlsr run``)
ends in :class:`NLSRService`. See :mod:`mlflow_nlsr.service.orchestrator` for the job's steps. Names are
loaded lazily: the webhook receiver and the app plugin import only :mod:`.intake` and stay free of
torch and lm-eval.
"""

from __future__ import annotations

from mlflow_nlsr._lazy import lazy_exports

#: name -> the submodule defining it
_EXPORTS = dict(NLSRService="orchestrator", LeaseLost="heartbeat", Outcome="settings", Settings="settings")

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
