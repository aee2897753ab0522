"""`mlflow nlsr worker --executor ray` runs a job's realign + gates as a task on a real Ray cluster.

The worker keeps the job's lease in the store; the Ray task does the work and sends its outputs and
log through the job's MLflow run. A task SIGKILLed mid-realign is one failed attempt that the store
retries, and a cancelled job stops its task and registers nothing.
"""

from __future__ import annotations

import getpass
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

pytest.importorskip(
    "mlflow_nlsr_ray", reason="the plugin is not installed: pip install -e plugins/mlflow-nlsr-ray"
)

from click.testing import CliRunner  # noqa: E402

from mlflow_nlsr.cli import cli  # noqa: E402
from mlflow_nlsr.registry.client import RegistryClient  # noqa: E402
from mlflow_nlsr.registry.models import log_local_model  # noqa: E402
from mlflow_nlsr.service import NLSRService, Settings  # noqa: E402
from mlflow_nlsr.service.executor import close_all  # noqa: E402
from mlflow_nlsr.store.repository import JobStore  # noqa: E402
from mlflow_nlsr.store.states import TERMINAL_STATES  # noqa: E402
from tests.service.conftest import PERMISSIVE, write_config  # noqa: E402

pytestmark = pytest.mark.slow
#: lineage tags that name the job itself (and so differ between two jobs of the same weights)
JOB_TAGS = {"nlsr.source_model", "nlsr.source_version", "nlsr.job_id"}


def register(server, models, name: str) -> str:
    client = RegistryClient(server.url)
    _, version = log_local_model(models[2], name=name, registered_model_name=name, client=client)
    return version.version


def register_and_queue(server, models, name: str, tmp_path: Path) -> tuple[str, str]:
    """Register a fine-tuned version and queue its job in a fresh SQLite store: (version, store URL)."""
    version = register(server, models, name)
    store = f"sqlite:///{tmp_path / 'jobs.db'}"
    with JobStore(store) as s:
        s.enqueue(name, version, "webhook", "test")
    return version, store


def realigned(client: RegistryClient, name: str) -> list:
    return client.search_versions(f"name = '{name}' and tags.`nlsr.realigned` = 'true'")


def ray_worker_command(server, store: str, tmp_path: Path, config: Path, ray_address: str) -> list[str]:
    """`mlflow nlsr worker` for one job whose realign + gates run as a task on the Ray cluster."""
    return [sys.executable, "-m", "mlflow_nlsr.cli", "worker", "--tracking-uri", server.url, "--store", store,
            "--work-dir", str(tmp_path / "work"), "--config", str(config), "--max-jobs", "1", "--lease", "30",
            "--poll-interval", "0.5", "--executor", "ray", "--executor-option", f"address={ray_address}",
            "--executor-option", f"work_dir={tmp_path / 'node'}", "--json"]  # fmt: skip


def worker_env() -> dict[str, str]:
    """This environment without fault injection or a tracking URI, on one thread."""
    env = {k: v for k, v in os.environ.items() if k not in ("NLSR_FAULT_INJECT", "MLFLOW_TRACKING_URI")}
    env.update(OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    return env


def test_a_registration_is_realigned_on_ray_with_the_lineage_of_the_local_executor(
    server, models, references, ray_address, tmp_path
):
    name = f"ray-e2e-{uuid.uuid4().hex[:8]}"
    config = write_config(tmp_path / "nlsr.yaml", "ray-e2e-*", *references, PERMISSIVE)
    client = RegistryClient(server.url)
    version, store = register_and_queue(server, models, name, tmp_path)

    command = ray_worker_command(server, store, tmp_path, config, ray_address)
    done = subprocess.run(command, env=worker_env(), capture_output=True, text=True, timeout=900)

    assert done.returncode == 0, done.stderr[-4000:]
    assert [o["state"] for o in json.loads(done.stdout[done.stdout.index("[") :])] == ["promoted"]
    ray_versions = realigned(client, name)
    assert len(ray_versions) == 1
    with JobStore(store) as s:
        job = s.get(name, version)
        events = [e.event for e in s.audit_trail(name, version)]
    assert job.state.value == "promoted" and job.attempts == 1
    steps = [e for e in events if e not in ("calibration_attempt", "calibrated")]
    assert steps == ["enqueued", "claimed", "realigned", "gated", "alias-moved", "promoted"], events
    assert "calibrated" in events, "the calibration search ran on Ray and audited its attempts"
    runs = client.mlflow.search_runs(["0"], f"attributes.run_name = 'nlsr-work-{name}-v{version}'")
    work_runs = [r for r in runs if r.info.run_name.startswith("nlsr-work-") and name in r.info.run_name]
    assert [r.info.status for r in work_runs] == ["FINISHED"]
    artifacts = {a.path for a in client.mlflow.list_artifacts(work_runs[0].info.run_id)}
    assert {"realigned", "gates", "logs"} <= artifacts
    assert not (tmp_path / "work" / "references").exists(), "the worker downloaded no model input"

    local_name = f"ray-local-{uuid.uuid4().hex[:8]}"
    local_config = write_config(tmp_path / "local.yaml", local_name, *references, PERMISSIVE)
    local_version = register(server, models, local_name)
    svc = NLSRService(Settings(tracking_uri=server.url, work_dir=tmp_path / "local", config=local_config))
    assert svc.process_version(local_name, local_version).state == "promoted"
    (local_realigned,) = realigned(client, local_name)
    ray_tags = {k: v for k, v in ray_versions[0].tags.items() if k not in JOB_TAGS}
    local_tags = {k: v for k, v in local_realigned.tags.items() if k not in JOB_TAGS}
    assert ray_tags == local_tags


def test_a_ray_task_killed_mid_realign_is_retried_to_exactly_one_version(
    server, models, references, ray_address, tmp_path
):
    name = f"ray-kill-{uuid.uuid4().hex[:8]}"
    config = write_config(tmp_path / "nlsr.yaml", name, *references, PERMISSIVE)
    client = RegistryClient(server.url)
    version = register(server, models, name)
    store = JobStore(f"sqlite:///{tmp_path / 'jobs.db'}", backoff_base_s=0.5, backoff_max_s=1.0)

    def service(**env: str) -> NLSRService:
        options = {"address": ray_address, "work_dir": str(tmp_path / "node")}
        if env:
            options["runtime_env"] = {"env_vars": env}
        settings = Settings(
            tracking_uri=server.url,
            work_dir=tmp_path / "work",
            config=config,
            executor="ray",
            executor_options=options,
            lease_seconds=30,
        )
        return NLSRService(settings, store=store)

    try:
        killed = service(NLSR_FAULT_INJECT="realign").process_version(name, version)
        assert killed.state == "queued", killed
        assert "ray task died" in killed.reasons[0]
        time.sleep(1.5)  # the store's backoff
        retried = service().process_version(name, version)
    finally:
        close_all()

    assert retried.state == "promoted", retried
    assert len(realigned(client, name)) == 1
    job = store.get(name, version)
    events = [e.event for e in store.audit_trail(name, version)]
    assert job.attempts == 2 and "retry" in events
    assert sum(e in {s.value for s in TERMINAL_STATES} for e in events) == 1, events


def test_a_cancelled_job_stops_its_ray_task_and_registers_nothing(
    server, models, references, ray_address, tmp_path
):
    name = f"ray-cancel-{uuid.uuid4().hex[:8]}"
    config = write_config(tmp_path / "nlsr.yaml", name, *references, PERMISSIVE)
    client = RegistryClient(server.url)
    version, store_url = register_and_queue(server, models, name, tmp_path)
    cmd = ray_worker_command(server, store_url, tmp_path, config, ray_address)
    out_file, err_file = tmp_path / "worker.out", tmp_path / "worker.err"
    with out_file.open("w") as out, err_file.open("w") as err:  # files: Ray streams the task's output here
        proc = subprocess.Popen(cmd, env=worker_env(), stdout=out, stderr=err, text=True)
    with JobStore(store_url) as s:
        deadline = time.monotonic() + 120
        while s.get(name, version).lease_owner is None and time.monotonic() < deadline:
            time.sleep(0.2)
    time.sleep(2)  # the task is submitted and importing its libraries

    cancelled = CliRunner().invoke(
        cli,
        [
            "cancel",
            name,
            str(version),
            "--tracking-uri",
            server.url,
            "--store",
            store_url,
            "--reason",
            "operator test",
            "--json",
        ],
    )
    assert cancelled.exit_code == 0, cancelled.output
    proc.wait(timeout=300)
    out, err = out_file.read_text(), err_file.read_text()

    assert proc.returncode == 0, err[-4000:]
    assert [o["state"] for o in json.loads(out[out.index("[") :])] == ["cancelled"]
    assert realigned(client, name) == []
    with JobStore(store_url) as s:
        job = s.get(name, version)
        trail = s.audit_trail(name, version)
    assert job.state.value == "cancelled" and job.lease_owner is None
    (event,) = [e for e in trail if e.event == "cancelled"]
    assert event.actor == getpass.getuser() and "operator test" in json.dumps(event.reasons)
    runs = client.mlflow.search_runs(["0"], f"attributes.run_name = 'nlsr-work-{name}-v{version}'")
    assert [r.info.status for r in runs if name in r.info.run_name] == ["KILLED"]
