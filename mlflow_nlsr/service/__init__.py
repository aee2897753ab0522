"""The one orchestrator: an idempotent, resumable ``process_version(name, version)``.

Every trigger (webhook receiver, ``mlflow server --app-name nlsr``, the poller, ``mlflow nlsr run``)
ends in :class:`NLSRService`. See :mod:`mlflow_nlsr.service.core` for the job's steps.
"""

from mlflow_nlsr.service.core import NLSRService
from mlflow_nlsr.service.heartbeat import LeaseLost
from mlflow_nlsr.service.settings import Outcome, Settings

__all__ = ["LeaseLost", "NLSRService", "Outcome", "Settings"]
