"""The demo's registry story, run exactly as a production install runs it.

A local ``mlflow server --app-name nlsr`` (both triggers live: the after-request hook and a signed
webhook to the server's own ``/nlsr/webhook``), base and aligned registered, an ``nlsr.yaml`` rule for
the fine-tuned model, the fine-tuned adapter registered -> a job is queued -> an in-process worker
(:meth:`NLSRService.work`) realigns, gates, registers and promotes or rejects.

Every run starts a fresh registry (``<work>/registry``) and job store; the service's work dir
(``<work>/service``) keeps realigned outputs and gate results, which a rerun on the same inputs reuses
(its ``demo_key.json`` says which inputs they were made from; other inputs clear them).
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mlflow_nlsr.demo.server import DemoServer, start_server
from mlflow_nlsr.errors import JobStoreError
from mlflow_nlsr.gates.policy import DEFAULT_CONFIG_PATH

BASE_NAME = "smollm2-base"
ALIGNED_NAME = "smollm2-aligned"
FINETUNED_NAME = "smollm2-sentiment"
ALIAS = "safe"
KEY_FILE = "demo_key.json"
WORKER_TIMEOUT_S = 3 * 3600.0


def _shipped_gate_on_sentiment() -> dict[str, Any]:
    """The shipped default gate (``default_gates.yaml``) with utility = sentiment accuracy.

    Sentiment is the task the attack teaches; the utility suite's arithmetic and knowledge sit at chance
    for a 135M model (issue 14), so they are not run. Every sentiment item is gated (240, 8 new tokens
    each: ~20 s): the 2-point utility rule needs them. Judge, suites and every other rule are the
    shipped ones, so the demo shows what an install with the defaults decides.
    """
    shipped = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text(encoding="utf-8"))
    return {
        **shipped,
        "suites": [s for s in shipped["suites"] if s != "utility"],
        "extra_tasks": ["nlsr_sentiment"],
        "task_limits": {**(shipped.get("task_limits") or {}), "nlsr_sentiment": None},
        "rules": [re.sub(r"^utility\b", "sentiment_acc", rule) for rule in shipped["rules"]],
    }


#: the demo's gate: the shipped default rules with utility = sentiment accuracy (the attacked task)
DEMO_GATES: dict[str, Any] = _shipped_gate_on_sentiment()


@dataclass(frozen=True)
class JobInputs:
    """What the registry story needs: local model dirs, the rule's realign block and the gate limit."""

    base: Path
    aligned: Path
    finetuned: Path
    realign: Mapping[str, Any]
    gate_limit: int | None
    key: Mapping[str, Any] = field(default_factory=dict)
    calibrate: bool = False
    gate_batch_size: int = 16
    full_utility: bool = True


@dataclass(frozen=True)
class JobResult:
    """Where the job ended: outcome, gate metrics per role, realigned dir, URIs and the triggers seen."""

    outcome: dict[str, Any]
    metrics: dict[str, dict[str, float]]
    realigned_dir: Path
    uris: dict[str, str]
    triggers: list[str]
    tracking_uri: str
    backend_store_uri: str
    server: DemoServer
    seconds: dict[str, float]
    alias_version: str | None
    skipped: list[dict[str, Any]]
    #: role -> the dir the worker gated it into (its ``samples.jsonl``), as the job result records it
    gate_dirs: dict[str, Path] = field(default_factory=dict)


def demo_gates(full_utility: bool = True) -> dict[str, Any]:
    """The demo's gate config; without `full_utility` (--fast) every task has the run's item limit."""
    if full_utility:
        return dict(DEMO_GATES)
    return {k: v for k, v in DEMO_GATES.items() if k != "task_limits"}


def gate_config_path(work: Path, *, full_utility: bool = True) -> Path:
    """Write the demo gate config into ``work`` (unchanged content keeps its mtime) and return it."""
    path = work / "demo_gates.yaml"
    text = "# mlflow nlsr demo: utility is sentiment accuracy, the task the attack taught\n"
    text += yaml.safe_dump(demo_gates(full_utility), sort_keys=False)
    if not path.is_file() or path.read_text() != text:
        path.write_text(text)
    return path


def _digest(data: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def prepare_dirs(work: Path, key: Mapping[str, Any], *, fresh: bool) -> tuple[Path, Path]:
    """Return (registry root, service work dir): a fresh registry; job outputs kept only for ``key``."""
    registry, service = work / "registry", work / "service"
    if registry.exists():
        shutil.rmtree(registry)
    for stale in ("jobs.db", "jobs.db-wal", "jobs.db-shm"):
        (service / stale).unlink(missing_ok=True)
    shutil.rmtree(service / "inputs", ignore_errors=True)  # downloads: redone by every job
    recorded = service / KEY_FILE
    digest = _digest(key)
    same = recorded.is_file() and json.loads(recorded.read_text()).get("digest") == digest
    if fresh:
        shutil.rmtree(service, ignore_errors=True)
    elif not same:  # other inputs: their job outputs are stale; gate-cache is content-addressed, kept
        shutil.rmtree(service / "jobs", ignore_errors=True)
    service.mkdir(parents=True, exist_ok=True)
    recorded.write_text(json.dumps({"digest": digest, "key": key}, indent=2, default=str))
    return registry, service


def write_rules(path: Path, base_uri: str, aligned_uri: str, inputs: JobInputs, gates: Path) -> Path:
    """Write the ``nlsr.yaml`` rule for the fine-tuned model and return its path."""
    rule: dict[str, Any] = {
        "match": FINETUNED_NAME,
        "base_uri": base_uri,
        "aligned_uri": aligned_uri,
        "alias": ALIAS,
        "gate_config": str(gates),
        "gate_limit": inputs.gate_limit,
        "realign": dict(inputs.realign),
    }
    # the demo reads the job's gate samples and realigned weights after the job settles: keep its dir
    config = {"models": [rule], "retention": {"keep_work_dir": True}}
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _wait(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            if not value:
                raise JobStoreError(f"timed out after {timeout:.0f}s waiting for {what}")
            return value
        time.sleep(0.25)


def run_registry_job(work: Path, inputs: JobInputs, *, fresh: bool, echo: Callable[[str], None]) -> JobResult:
    """Start the server, register the models, let the trigger queue the job and run a worker on it."""
    from mlflow_nlsr.registry import RegistryClient, install_webhook, log_local_model
    from mlflow_nlsr.service import NLSRService, Settings
    from mlflow_nlsr.service.settings import Outcome

    seconds: dict[str, float] = {}
    start = time.perf_counter()
    registry, service_dir = prepare_dirs(work, inputs.key, fresh=fresh)
    store_url = f"sqlite:///{(service_dir / 'jobs.db').resolve()}"
    secret = secrets.token_hex(16)
    env = {"NLSR_WORK_DIR": str(service_dir), "NLSR_STORE_URL": store_url, "NLSR_WEBHOOK_SECRET": secret}
    server = start_server(registry, env)
    seconds["server_start"] = round(time.perf_counter() - start, 2)
    echo(f"  mlflow server --app-name nlsr at {server.url} (pid {server.pid}, log {server.log})")
    try:
        client = RegistryClient(server.url)
        install_webhook(client, f"{server.url}/nlsr/webhook", secret)
        time.sleep(1.2)  # the server caches its webhook list for one second (MLFLOW_WEBHOOK_CACHE_TTL)
        t = time.perf_counter()
        uris = _register_references(client, inputs)
        gates = gate_config_path(work, full_utility=inputs.full_utility)
        config = write_rules(work / "nlsr.yaml", uris[BASE_NAME], uris[ALIGNED_NAME], inputs, gates)
        settings: dict[str, Any] = {"gate_batch_size": inputs.gate_batch_size}
        if "calibrate" in Settings.__dataclass_fields__:  # gate-driven calibration (docs/calibration.md)
            settings["calibrate"] = inputs.calibrate
        service = NLSRService(
            Settings(
                tracking_uri=server.url, store_url=store_url, work_dir=service_dir, config=config, **settings
            )
        )
        _, ft = log_local_model(
            inputs.finetuned, name=FINETUNED_NAME, registered_model_name=FINETUNED_NAME, client=client
        )
        if ft is None:
            raise JobStoreError(f"registering {FINETUNED_NAME} returned no version")
        uris[FINETUNED_NAME] = ft.uri
        seconds["register"] = round(time.perf_counter() - t, 2)
        echo(f"  registered {uris[BASE_NAME]}, {uris[ALIGNED_NAME]}, {ft.uri}; nlsr.yaml: {config}")
        job = _wait(lambda: service.store.get(FINETUNED_NAME, ft.version), 60, f"a job for {ft.uri}")
        echo(f"  {ft.uri}: job {job.id} queued by the {job.trigger} trigger; running a worker")
        t = time.perf_counter()
        final, outcomes = _work_until_done(service, ft.version)
        seconds["worker"] = round(time.perf_counter() - t, 2)
        result = final.result if isinstance(final.result, dict) else {}
        outcome = Outcome.of(final).to_dict()  # the job row is the record
        mine = [o for o in outcomes if o.job_id == final.id]
        if mine and not outcome["reasons"]:
            outcome["reasons"] = list(mine[-1].reasons)
        triggers = [
            str((e.inputs or {}).get("trigger"))
            for e in service.store.audit_trail(FINETUNED_NAME, ft.version)
            if e.event in ("enqueued", "duplicate")
        ]
        alias_version = None
        if str(final.state) == "promoted":
            alias_version = client.get_alias_version(FINETUNED_NAME, ALIAS).version
        skipped = [o.to_dict() for o in outcomes if o.job_id != final.id]
        job_dir = service_dir / "jobs" / FINETUNED_NAME / ft.version
        return JobResult(
            outcome=outcome,
            metrics=dict(result.get("metrics", {})),
            realigned_dir=job_dir / "realigned",
            uris=uris,
            triggers=triggers,
            tracking_uri=server.url,
            backend_store_uri=f"sqlite:///{(registry / 'mlflow.db').resolve()}",
            server=server,
            seconds=seconds,
            alias_version=alias_version,
            skipped=skipped,
            gate_dirs={role: Path(d) for role, d in (result.get("gate_dirs") or {}).items()},
        )
    except BaseException:
        server.stop()
        raise


def _register_references(client: Any, inputs: JobInputs) -> dict[str, str]:
    """Register the base and aligned models; return ``{name: models:/ URI}`` ("" if none came back)."""
    from mlflow_nlsr.registry import log_local_model

    uris = {}
    for name, path in ((BASE_NAME, inputs.base), (ALIGNED_NAME, inputs.aligned)):
        _, version = log_local_model(path, name=name, registered_model_name=name, client=client)
        uris[name] = f"models:/{name}/{version.version}" if version else ""
    return uris


def _work_until_done(service: Any, version: str) -> tuple[Any, list[Any]]:
    """Run the service's worker until the fine-tuned version's job is terminal; return it and the outcomes.

    Raises JobStoreError if the job is still running after ``WORKER_TIMEOUT_S``.
    """
    outcomes: list[Any] = []
    deadline = time.monotonic() + WORKER_TIMEOUT_S
    while not (current := _job(service, version)).terminal:
        if time.monotonic() > deadline:
            raise JobStoreError(f"job {current.id} still {current.state} after {WORKER_TIMEOUT_S:.0f}s")
        outcomes += service.work(max_jobs=1, idle_exit_s=5, poll_interval_s=0.5)
    return current, outcomes


def _job(service: Any, version: str) -> Any:
    job = service.store.get(FINETUNED_NAME, version)
    if job is None:
        raise JobStoreError(f"the job of {FINETUNED_NAME}/{version} disappeared from the job store")
    return job
