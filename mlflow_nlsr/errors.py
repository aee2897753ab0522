"""One error hierarchy for mlflow-nlsr.

Every error the package raises on purpose is an :class:`NLSRError`. Each subclass also inherits the
nearest builtin, so callers that catch ``ValueError``/``FileNotFoundError`` keep working. Edges
translate them: ``cli`` to exit codes, ``app`` to HTTP status codes, the job runner to audit entries.
Messages say what was expected and what was found.
"""

from __future__ import annotations


class NLSRError(Exception):
    """Base class of every error mlflow-nlsr raises on purpose."""

    exit_code: int = 1


class ConfigError(NLSRError, ValueError):
    """An option, config file or gate config is invalid."""

    exit_code = 2


class InputError(NLSRError, ValueError):
    """An input model, adapter or data file is missing, malformed or inconsistent."""

    exit_code = 3


class IncompatibleModelsError(InputError):
    """Base, aligned and fine-tuned inputs do not agree (architecture, shapes, targets, ranks)."""


class NotAContinuationError(InputError):
    """The fine-tuned adapter was not trained by continuing the aligned adapter."""


class CorruptCheckpointError(InputError):
    """A weights file is truncated, unreadable or holds NaN/Inf values."""


class CalibrationError(InputError):
    """The calibration data is empty or malformed."""


class GateError(NLSRError, RuntimeError):
    """A gate could not be evaluated (unknown task, missing metric, evaluation failure)."""

    exit_code = 4


class RegistryError(NLSRError, RuntimeError):
    """The MLflow registry refused an operation or a model URI could not be resolved."""

    exit_code = 5


class ModelReferenceError(RegistryError, InputError):
    """A model URI is malformed, names a version/alias/model that does not exist, or holds no model.

    Both a RegistryError (exit code 5) and an InputError: no retry can fix it, so a job fails at once.
    """


class WebhookRejected(NLSRError, ValueError):
    """A webhook delivery failed verification; ``status`` is the HTTP code to answer with."""

    exit_code = 6

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class JobStoreError(NLSRError, RuntimeError):
    """The job store could not record or claim a job."""

    exit_code = 7


class ExecutorError(NLSRError, RuntimeError):
    """An executor lost a job's work (the remote process died, the cluster went away); the job is retried."""


class OutputExistsError(NLSRError, FileExistsError):
    """The output directory exists and overwriting was not requested."""

    exit_code = 8


class GovernanceError(NLSRError, RuntimeError):
    """A governance action (approve, reject, rollback, requeue, cancel) cannot be taken as asked."""

    exit_code = 9


class NotAwaitingApproval(GovernanceError):
    """Approve/reject named a version whose job is not awaiting approval."""


class VerificationFailed(GovernanceError):
    """``mlflow nlsr verify`` found a hash or byte mismatch."""

    exit_code = 10
