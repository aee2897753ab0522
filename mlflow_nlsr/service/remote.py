"""The remote side of an executor: a JSON job spec in, one job's work done on a cluster node.

The spec names everything by URI or value, never by a path on the claiming worker's disk: the model
URIs, the rule (with its gate config inlined), the service settings, the job store URL, and the MLflow
run that receives the outputs (``realigned/``, ``gates/``) and the logs. :func:`fetch_outputs` brings
them back for registration.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlflow_nlsr import errors
from mlflow_nlsr.errors import ExecutorError, NLSRError
from mlflow_nlsr.registry import RegistryClient
from mlflow_nlsr.rules import Resolved, Rule
from mlflow_nlsr.service.heartbeat import Heartbeat, LeaseLost
from mlflow_nlsr.service.settings import Settings, job_work_dir
from mlflow_nlsr.service.work import WorkInput, realign_and_gate
from mlflow_nlsr.store.states import JobState
from mlflow_nlsr.store.tables import Job

log = logging.getLogger(__name__)
#: the key of a job's result that names the run holding its outputs
OUTPUTS = "outputs"
LOG_FILE = "nlsr-work.log"


@dataclass(frozen=True)
class JobSpec:
    """One job's work as JSON: what to realign and gate, how, and where the results go."""

    job_id: int
    model_name: str
    version: str
    source_uri: str
    base_uri: str
    aligned_uri: str
    rule: Mapping[str, Any]
    gate_config_text: str | None
    settings: Mapping[str, Any]
    run_id: str

    @classmethod
    def build(cls, svc: Any, job: Job, work: WorkInput, run_id: str) -> JobSpec:
        """The spec of `job` as the claiming worker `svc` sees it (store URL and tracking URI resolved)."""
        rule = dataclasses.asdict(work.resolved.rule)
        gate_path = rule.get("gate_config")
        settings = {k: _plain(v) for k, v in dataclasses.asdict(svc.settings).items()}
        settings.update(tracking_uri=svc.client.tracking_uri, store_url=svc.store.url, config=None)
        return cls(
            job.id, job.model_name, job.version, work.source_uri, work.resolved.base_uri,
            work.resolved.aligned_uri, rule, Path(gate_path).read_text() if gate_path else None,
            settings, run_id,
        )  # fmt: skip

    def to_json(self) -> str:
        """Serialise (plain JSON)."""
        return json.dumps(dataclasses.asdict(self), sort_keys=True, default=str)

    @classmethod
    def from_json(cls, text: str) -> JobSpec:
        """Read back :meth:`to_json`."""
        return cls(**json.loads(text))


def _plain(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Mapping):
        return dict(value)
    return value


def remote_job_dir(root: Path, spec: JobSpec) -> Path:
    """The job's dir under a node's scratch `root` (the worker's layout: ``jobs/<model>/<version>``)."""
    return job_work_dir(root, spec.model_name, spec.version)


def run_spec(spec: JobSpec, scratch: Path | str) -> str:
    """Do the work of `spec` under the node-local `scratch` dir; return the job's state afterwards."""
    from mlflow_nlsr.service.orchestrator import NLSRService

    root = Path(scratch)
    job_dir = remote_job_dir(root, spec)
    job_dir.mkdir(parents=True, exist_ok=True)
    rule = dict(spec.rule)
    if spec.gate_config_text is not None:
        gates = job_dir / "gates.yaml"
        gates.write_text(spec.gate_config_text)
        rule["gate_config"] = str(gates)
    fields = {f.name for f in dataclasses.fields(Settings)}
    values = {k: v for k, v in spec.settings.items() if k in fields}
    settings = Settings(**{**values, "work_dir": root, "config": None})
    svc = NLSRService(settings)
    job = svc.store.get_by_id(spec.job_id)
    if job is None:
        raise ExecutorError(f"job {spec.job_id} is not in the job store {svc.store.url}")
    resolved = Resolved(Rule(**rule), spec.base_uri, spec.aligned_uri)
    options = resolved.rule.options(**{**settings.placement_overrides(), **dict(settings.realign_overrides)})
    work = WorkInput(spec.source_uri, resolved, options, job_dir)

    def publish() -> dict[str, str]:
        svc.client.log_artifacts(spec.run_id, job_dir / "realigned", "realigned")
        if (job_dir / "gates").is_dir():
            svc.client.log_artifacts(spec.run_id, job_dir / "gates", "gates")
        return {OUTPUTS: f"runs:/{spec.run_id}"}

    with Heartbeat(svc.store, spec.job_id, settings.worker_id, settings.lease_seconds) as beat:
        return realign_and_gate(svc, job, work, beat, publish).state.value


@contextmanager
def captured_log(path: Path) -> Iterator[Path]:
    """Copy this process's log records (INFO and up) into `path` while the block runs."""
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(min(level, logging.INFO) if level else logging.INFO)
    try:
        yield path
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        handler.close()


def run_remote(spec_json: str, scratch: Path | str) -> dict[str, Any]:
    """The executor task body: run a spec, upload its log to the job's run, report ok/error as data.

    Errors come back as ``{"ok": False, "type": …, "error": …}`` so the worker re-raises the same
    NLSRError class (a bad input stays permanent, a lost download is retried).
    """
    spec = JobSpec.from_json(spec_json)
    root = Path(scratch)
    log_path = remote_job_dir(root, spec) / LOG_FILE
    log_path.parent.mkdir(parents=True, exist_ok=True)
    outcome: dict[str, Any]
    with captured_log(log_path):
        try:
            log.info("job %s: %s/%s on %s", spec.job_id, spec.model_name, spec.version, root)
            outcome = {"ok": True, "state": run_spec(spec, root)}
            log.info("job %s: %s", spec.job_id, outcome["state"])
        except Exception as exc:  # noqa: BLE001 - the worker decides about retries
            log.exception("job %s failed", spec.job_id)
            outcome = {"ok": False, "type": type(exc).__name__, "error": str(exc)}
    try:
        RegistryClient(spec.settings.get("tracking_uri")).log_artifacts(spec.run_id, log_path, "logs")
    except NLSRError as exc:
        log.warning("could not upload the log of job %s: %s", spec.job_id, exc)
    return outcome


def raise_remote_error(kind: str | None, message: str) -> None:
    """Raise the NLSRError class named `kind` (ExecutorError for anything else) with `message`."""
    cls = getattr(errors, kind or "", None)
    if kind == "LeaseLost":
        raise LeaseLost(message)
    if isinstance(cls, type) and issubclass(cls, NLSRError):
        raise cls(message)
    raise ExecutorError(f"{kind}: {message}" if kind else message)


def fetch_outputs(client: RegistryClient, job: Job, job_dir: Path) -> None:
    """Download a remotely gated job's ``realigned/`` and ``gates/`` into `job_dir` unless present."""
    result = job.result if isinstance(job.result, Mapping) else {}
    source = result.get(OUTPUTS)
    if job.state is not JobState.GATED or not source or (job_dir / "realigned" / "nlsr_report.json").exists():
        return
    job_dir.mkdir(parents=True, exist_ok=True)
    client.download_artifacts(f"{source}/realigned", job_dir)
    try:
        client.download_artifacts(f"{source}/gates", job_dir)
    except NLSRError:
        log.info("job %s: no gate outputs under %s", job.id, source)
