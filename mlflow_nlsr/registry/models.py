"""Log a local HF checkpoint or PEFT adapter directory as a raw-artifact LoggedModel and register it.

Why raw artifacts and not ``mlflow.transformers.log_model``: on transformers 5.x the directory form
crashes (``'str' object has no attribute '__name__'``), and a PEFT model logged without
``base_model_path`` loads back with corrupted weights (shared/docs/mlflow-notes.md §3.1). A raw
LoggedModel keeps the directory byte-for-byte, so ``from_pretrained`` works on the download.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mlflow.exceptions import MlflowException

from mlflow_nlsr.errors import InputError
from mlflow_nlsr.registry import tags as T
from mlflow_nlsr.registry._errors import mlflow_errors
from mlflow_nlsr.registry.client import RegistryClient, VersionInfo
from mlflow_nlsr.registry.uris import detect_format

_log = logging.getLogger(__name__)
MODEL_TYPES = {T.FORMAT_HF_DIR: "hf-checkpoint", T.FORMAT_PEFT: "peft-adapter"}


def log_local_model(
    local_dir: Path | str,
    *,
    name: str,
    tags: Mapping[str, str] | None = None,
    params: Mapping[str, Any] | None = None,
    registered_model_name: str | None = None,
    version_tags: Mapping[str, str] | None = None,
    description: str | None = None,
    client: RegistryClient | None = None,
    experiment: str | None = None,
    source_run_id: str | None = None,
) -> tuple[str, VersionInfo | None]:
    """Log ``local_dir`` as LoggedModel ``name`` (tagged ``nlsr.format``) and optionally register it.

    Returns ``(model_id, version)``; ``version`` is None unless ``registered_model_name`` is given.
    ``version_tags`` are sent in the create call, so the ``model_version.created`` webhook carries
    them (loop prevention). InputError if ``local_dir`` is not a model; RegistryError for any MLflow
    failure, after marking the LoggedModel FAILED.
    """
    directory = Path(local_dir)
    fmt = detect_format(directory) if directory.is_dir() else None
    if fmt is None:
        raise InputError(
            f"{directory}: expected an HF checkpoint dir (config.json + weights) or a PEFT adapter dir "
            f"(adapter_config.json + adapter_model.*), found {_listing(directory)}"
        )
    client = client or RegistryClient()
    all_tags = {**{k: str(v) for k, v in (tags or {}).items()}, T.FORMAT: fmt}
    with mlflow_errors(f"create LoggedModel {name}"):
        logged = client.mlflow.create_logged_model(
            client.experiment_id(experiment),
            name=name,
            source_run_id=source_run_id,
            tags=all_tags,
            params={k: str(v) for k, v in (params or {}).items()},
            model_type=MODEL_TYPES[fmt],
        )
    model_id = str(logged.model_id)
    try:
        with mlflow_errors(f"upload {directory} to LoggedModel {model_id}"):
            client.mlflow.log_model_artifacts(model_id, str(directory))
            client.mlflow.finalize_logged_model(model_id, "READY")
    except BaseException:
        _mark_failed(client, model_id)
        raise
    if registered_model_name is None:
        return model_id, None
    version = client.create_version(
        registered_model_name,
        f"models:/{model_id}",
        tags=version_tags,
        description=description,
        model_id=model_id,
        run_id=source_run_id,
    )
    return model_id, version


def _mark_failed(client: RegistryClient, model_id: str) -> None:
    # Best effort: the original failure (already being raised) is what the caller must see.
    try:
        client.mlflow.finalize_logged_model(model_id, "FAILED")
    except (MlflowException, OSError) as exc:
        _log.warning("LoggedModel %s could not be marked FAILED: %s", model_id, exc)


def _listing(directory: Path) -> str:
    if not directory.exists():
        return "nothing (the path does not exist)"
    if not directory.is_dir():
        return "a file"
    names = sorted(p.name + ("/" if p.is_dir() else "") for p in directory.iterdir())
    return ", ".join(names[:15]) or "an empty directory"
