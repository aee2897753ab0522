"""Translate MLflow exceptions into RegistryError with a message that names the operation."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from mlflow.exceptions import MlflowException

from mlflow_nlsr.errors import ModelReferenceError, RegistryError

NOT_FOUND_CODES = frozenset({"RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"})
EXISTS_CODES = frozenset({"RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"})


def error_code(exc: BaseException) -> str:
    """Return the MLflow error code of ``exc`` ('' for non-MLflow exceptions)."""
    return str(getattr(exc, "error_code", "") or "")


def is_not_found(exc: BaseException) -> bool:
    """True when MLflow reported that the entity does not exist."""
    return error_code(exc) in NOT_FOUND_CODES


@contextmanager
def mlflow_errors(what: str) -> Iterator[None]:
    """Re-raise MLflow (and transport) failures inside the block as RegistryError('<what>: …')."""
    try:
        yield
    except RegistryError:
        raise
    except MlflowException as exc:
        code = error_code(exc)
        message = f"{what} failed: [{code or type(exc).__name__}] {exc.message}"
        if code in NOT_FOUND_CODES:  # permanent: a retry cannot bring a deleted version back
            message = f"{what} failed (not found: deleted or never created): [{code}] {exc.message}"
            raise ModelReferenceError(message) from exc
        raise RegistryError(message) from exc
    except OSError as exc:
        raise RegistryError(f"{what} failed: {type(exc).__name__}: {exc}") from exc
