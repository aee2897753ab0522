"""Thin, typed wrapper over ``MlflowClient`` for the registry operations NLSR needs.

No decisions live here: every method is one MLflow call (or one paginated search) whose result is
normalised into a frozen dataclass and whose failures become :class:`RegistryError`.
"""

from __future__ import annotations

import fnmatch
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow.artifacts
from mlflow import MlflowClient
from mlflow.entities import LoggedModelInput, Metric, Param
from mlflow.entities.webhook import WebhookEvent as MlflowWebhookEvent
from mlflow.exceptions import MlflowException

from mlflow_nlsr.registry import tags as T
from mlflow_nlsr.registry._errors import EXISTS_CODES, NOT_FOUND_CODES, error_code, mlflow_errors
from mlflow_nlsr.registry.uris import model_id_from_source, parse_model_uri

_PAGE = 200


@dataclass(frozen=True)
class VersionInfo:
    """A registered model version, normalised (``model_id`` parsed from ``source``)."""

    name: str
    version: str
    source: str
    run_id: str | None
    tags: Mapping[str, str] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()
    description: str | None = None
    model_id: str | None = None
    status: str | None = None
    #: ``ModelVersion.user_id`` (MLflow OSS leaves it empty unless a front end fills it)
    user_id: str | None = None
    created_ms: int | None = None

    @property
    def uri(self) -> str:
        """Return ``models:/NAME/VERSION``."""
        return f"models:/{self.name}/{self.version}"


@dataclass(frozen=True)
class WebhookInfo:
    """A registry webhook as listed by MLflow (the secret is never exposed)."""

    webhook_id: str
    name: str
    url: str
    events: tuple[str, ...]
    status: str


def is_realigned(version: VersionInfo) -> bool:
    """True when NLSR registered this version itself (tag ``nlsr.realigned == "true"``)."""
    return version.tags.get(T.REALIGNED, "").lower() == "true"


def to_version_info(mv: Any) -> VersionInfo:
    """Normalise an ``mlflow.entities.model_registry.ModelVersion``."""
    source = str(mv.source or "")
    return VersionInfo(
        name=str(mv.name),
        version=str(mv.version),
        source=source,
        run_id=mv.run_id or None,
        tags=dict(mv.tags or {}),
        aliases=tuple(getattr(mv, "aliases", None) or ()),
        description=mv.description or None,
        model_id=getattr(mv, "model_id", None) or model_id_from_source(source),
        status=str(mv.status) if getattr(mv, "status", None) else None,
        user_id=getattr(mv, "user_id", None) or None,
        created_ms=int(mv.creation_timestamp) if getattr(mv, "creation_timestamp", None) else None,
    )


class RegistryClient:
    """Registry + tracking operations against one MLflow tracking server (or the default URI)."""

    def __init__(self, tracking_uri: str | None = None) -> None:
        self.mlflow = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        self.tracking_uri: str = self.mlflow.tracking_uri

    # -- versions ---------------------------------------------------------------------------
    def get_version(self, name: str, version: str | int) -> VersionInfo:
        """Return one model version; RegistryError when it is unknown or deleted."""
        with mlflow_errors(f"get model version {name}/{version}"):
            return to_version_info(self.mlflow.get_model_version(name, str(version)))

    def create_version(
        self,
        name: str,
        source: str,
        *,
        tags: Mapping[str, str] | None = None,
        description: str | None = None,
        model_id: str | None = None,
        run_id: str | None = None,
    ) -> VersionInfo:
        """Register ``source`` as a new version of ``name`` (created if needed), tags in the create call."""
        with mlflow_errors(f"create registered model {name}"):
            try:
                self.mlflow.create_registered_model(name)
            except MlflowException as exc:  # only "already exists" is tolerated
                if error_code(exc) not in EXISTS_CODES:
                    raise
        with mlflow_errors(f"create a version of {name} from {source}"):
            mv = self.mlflow.create_model_version(
                name, source, run_id=run_id, tags=dict(tags or {}), description=description, model_id=model_id
            )
        return to_version_info(mv)

    def set_version_tags(self, name: str, version: str | int, tags: Mapping[str, str]) -> None:
        """Set several tags on one model version."""
        with mlflow_errors(f"tag model version {name}/{version}"):
            for key, value in tags.items():
                self.mlflow.set_model_version_tag(name, str(version), key, str(value))

    def delete_version_tag(self, name: str, version: str | int, key: str) -> None:
        """Remove one tag from a model version."""
        with mlflow_errors(f"delete tag {key} of model version {name}/{version}"):
            self.mlflow.delete_model_version_tag(name, str(version), key)

    def set_description(self, name: str, version: str | int, description: str) -> None:
        """Replace the description of a model version."""
        with mlflow_errors(f"describe model version {name}/{version}"):
            self.mlflow.update_model_version(name, str(version), description=description)

    def set_alias(self, name: str, alias: str, version: str | int) -> None:
        """Point ``models:/name@alias`` at ``version``."""
        with mlflow_errors(f"set alias {name}@{alias} -> {version}"):
            self.mlflow.set_registered_model_alias(name, alias, str(version))

    def delete_alias(self, name: str, alias: str) -> None:
        """Remove ``name@alias``."""
        with mlflow_errors(f"delete alias {name}@{alias}"):
            self.mlflow.delete_registered_model_alias(name, alias)

    def find_alias_version(self, name: str, alias: str) -> VersionInfo | None:
        """The version ``name@alias`` points at, or None when the alias (or the model) is unset."""
        with mlflow_errors(f"read aliases of {name}"):
            try:
                aliases = dict(self.mlflow.get_registered_model(name).aliases or {})
            except MlflowException as exc:
                if error_code(exc) in NOT_FOUND_CODES:
                    return None
                raise
        version = aliases.get(alias)
        return None if version is None else self.get_version(name, version)

    def registering_user(self, info: VersionInfo) -> str | None:
        """Who registered a version: ``ModelVersion.user_id``, else the user of the run it came from."""
        if info.user_id:
            return info.user_id
        if not info.run_id:
            return None
        with mlflow_errors(f"get run {info.run_id}"):
            try:
                return self.mlflow.get_run(info.run_id).info.user_id or None
            except MlflowException:
                return None

    def get_alias_version(self, name: str, alias: str) -> VersionInfo:
        """Return the version ``name@alias`` points at; RegistryError when the alias is unset."""
        with mlflow_errors(f"resolve alias {name}@{alias}"):
            return to_version_info(self.mlflow.get_model_version_by_alias(name, alias))

    def search_versions(self, filter_string: str | None = None) -> list[VersionInfo]:
        """Return every version matching an MLflow filter string (all pages; aliases not populated)."""
        out: list[VersionInfo] = []
        token: str | None = None
        with mlflow_errors(f"search model versions ({filter_string or 'all'})"):
            while True:
                page = self.mlflow.search_model_versions(filter_string, max_results=_PAGE, page_token=token)
                out.extend(to_version_info(mv) for mv in page)
                token = page.token
                if not token:
                    return out

    def search_versions_without_tag(
        self, tag: str = T.STATUS, name_glob: str | None = None
    ) -> list[VersionInfo]:
        """Return versions lacking ``tag`` (the poller's work list), optionally of names matching a glob."""
        versions = self.search_versions(_name_filter(name_glob))
        return [
            v
            for v in versions
            if tag not in v.tags and (name_glob is None or fnmatch.fnmatchcase(v.name, name_glob))
        ]

    # -- runs, metrics, artifacts -------------------------------------------------------------
    def experiment_id(self, name: str | None = None) -> str:
        """Return the id of experiment ``name`` (created if missing); ``None`` means the Default one."""
        if name is None:
            return "0"
        with mlflow_errors(f"get or create experiment {name}"):
            exp = self.mlflow.get_experiment_by_name(name)
            return exp.experiment_id if exp is not None else self.mlflow.create_experiment(name)

    def log_gate_metrics(
        self,
        model_id: str,
        metrics: Mapping[str, float],
        params: Mapping[str, Any] | None = None,
        artifacts_dir: Path | str | None = None,
        *,
        experiment: str | None = None,
        run_name: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> str:
        """Log gate metrics linked to LoggedModel ``model_id`` inside a new, explicit run; return its id."""
        with mlflow_errors(f"log gate metrics for {model_id}"):
            run = self.mlflow.create_run(
                self.experiment_id(experiment), run_name=run_name, tags=dict(tags or {})
            )
            run_id = run.info.run_id
            status = "FAILED"
            try:
                now = int(time.time() * 1000)
                self.mlflow.log_inputs(run_id, models=[LoggedModelInput(model_id=model_id)])
                self.mlflow.log_batch(
                    run_id,
                    metrics=[
                        Metric(k, float(v), now, 0, model_id=model_id, run_id=run_id)
                        for k, v in metrics.items()
                    ],
                    params=[Param(k, str(v)) for k, v in (params or {}).items()],
                )
                if artifacts_dir is not None:
                    self.mlflow.log_artifacts(run_id, str(artifacts_dir))
                status = "FINISHED"
            finally:
                self.mlflow.set_terminated(run_id, status=status)
        return run_id

    def log_child_runs(self, parent_run_id: str, runs: Sequence[Mapping[str, Any]]) -> list[str]:
        """Log finished nested runs (``{"name", "params", "metrics", "tags"}``) under ``parent_run_id``."""
        ids: list[str] = []
        with mlflow_errors(f"log nested runs under {parent_run_id}"):
            experiment_id = self.mlflow.get_run(parent_run_id).info.experiment_id
            for spec in runs:
                tags = {**dict(spec.get("tags") or {}), "mlflow.parentRunId": parent_run_id}
                run = self.mlflow.create_run(experiment_id, run_name=spec.get("name"), tags=tags)
                now = int(time.time() * 1000)
                self.mlflow.log_batch(
                    run.info.run_id,
                    metrics=[Metric(k, float(v), now, 0) for k, v in (spec.get("metrics") or {}).items()],
                    params=[Param(k, str(v)) for k, v in (spec.get("params") or {}).items()],
                )
                self.mlflow.set_terminated(run.info.run_id, status="FINISHED")
                ids.append(run.info.run_id)
        return ids

    def start_run(self, run_name: str, tags: Mapping[str, str] | None = None) -> str:
        """Create a run in the Default experiment (left running: end it with :meth:`end_run`); its id."""
        with mlflow_errors(f"create run {run_name}"):
            run = self.mlflow.create_run(self.experiment_id(None), run_name=run_name, tags=dict(tags or {}))
        return str(run.info.run_id)

    def log_artifacts(self, run_id: str, local: Path | str, artifact_path: str | None = None) -> None:
        """Upload a file or a directory's files to ``run_id`` under ``artifact_path``."""
        with mlflow_errors(f"upload {local} to run {run_id}"):
            if Path(local).is_dir():
                self.mlflow.log_artifacts(run_id, str(local), artifact_path)
            else:
                self.mlflow.log_artifact(run_id, str(local), artifact_path)

    def end_run(self, run_id: str, status: str = "FINISHED") -> None:
        """Mark a run FINISHED, FAILED or KILLED."""
        with mlflow_errors(f"end run {run_id}"):
            self.mlflow.set_terminated(run_id, status=status)

    def download_artifacts(self, uri: str, dest: Path | str) -> Path:
        """Download the artifacts at ``uri`` into ``dest`` and return the local path."""
        with mlflow_errors(f"download {uri}"):
            local = mlflow.artifacts.download_artifacts(
                artifact_uri=self.underlying_uri(uri),
                dst_path=str(dest),
                tracking_uri=self.tracking_uri,
                registry_uri=self.tracking_uri,
            )
        return Path(local)

    def underlying_uri(self, uri: str) -> str:
        """Map a ``models:/`` URI to its artifact location via *this* server; other URIs pass through.

        MLflow's own models:/ resolution reads the process-global registry URI, not ours.
        """
        ref = parse_model_uri(uri)
        if ref.model_id is not None:
            with mlflow_errors(f"get LoggedModel {ref.model_id}"):
                base = str(self.mlflow.get_logged_model(ref.model_id).artifact_location)
        elif ref.name is not None and ref.alias is not None:
            version = self.get_alias_version(ref.name, ref.alias).version
            base = self._version_download_uri(ref.name, version)
        elif ref.name is not None and ref.version is not None:
            base = self._version_download_uri(ref.name, ref.version)
        else:
            return uri
        return f"{base.rstrip('/')}/{ref.subpath}" if ref.subpath else base

    def _version_download_uri(self, name: str, version: str) -> str:
        with mlflow_errors(f"get download URI of model version {name}/{version}"):
            return str(self.mlflow.get_model_version_download_uri(name, version))

    # -- webhooks ------------------------------------------------------------------------------
    def create_webhook(
        self,
        name: str,
        url: str,
        events: Sequence[str],
        secret: str | None = None,
        description: str | None = None,
    ) -> WebhookInfo:
        """Create an ACTIVE registry webhook."""
        with mlflow_errors(f"create webhook {name} -> {url}"):
            wh = self.mlflow.create_webhook(
                name=name,
                url=url,
                events=_events(events),
                description=description,
                secret=secret,
                status="ACTIVE",
            )
        return _webhook_info(wh)

    def update_webhook(
        self,
        webhook_id: str,
        *,
        url: str,
        events: Sequence[str],
        secret: str | None = None,
        description: str | None = None,
    ) -> WebhookInfo:
        """Point an existing webhook at ``url``/``events`` (and ``secret``) and re-activate it."""
        with mlflow_errors(f"update webhook {webhook_id}"):
            wh = self.mlflow.update_webhook(
                webhook_id,
                url=url,
                events=_events(events),
                secret=secret,
                description=description,
                status="ACTIVE",
            )
        return _webhook_info(wh)

    def list_webhooks(self) -> list[WebhookInfo]:
        """Return every registry webhook (all pages)."""
        out: list[WebhookInfo] = []
        token: str | None = None
        with mlflow_errors("list webhooks"):
            while True:
                page = self.mlflow.list_webhooks(max_results=_PAGE, page_token=token)
                out.extend(_webhook_info(wh) for wh in page)
                token = page.token
                if not token:
                    return out

    def delete_webhook(self, webhook_id: str) -> None:
        """Delete a registry webhook."""
        with mlflow_errors(f"delete webhook {webhook_id}"):
            self.mlflow.delete_webhook(webhook_id)


def _webhook_info(wh: Any) -> WebhookInfo:
    return WebhookInfo(
        webhook_id=str(wh.webhook_id),
        name=str(wh.name),
        url=str(wh.url),
        events=tuple(str(e) for e in wh.events),
        status=str(wh.status),
    )


def _name_filter(name_glob: str | None) -> str | None:
    """Server-side prefilter: exact name, or LIKE for a glob (``_``/``%`` over-match; fnmatch decides)."""
    if name_glob is None:
        return None
    if any(c in name_glob for c in "[]'\\"):
        return None
    quoted = name_glob
    if any(c in name_glob for c in "*?"):
        return f"name LIKE '{quoted.replace('*', '%').replace('?', '_')}'"
    return f"name = '{quoted}'"


def _events(events: Sequence[str]) -> Any:
    """Parse ``entity.action`` strings into MLflow's WebhookEvent (MLflow raises for unknown ones)."""
    return [MlflowWebhookEvent.from_str(e) for e in events]  # type: ignore[arg-type]
