"""Killed workers, racing workers and a restarted tracking server never lose or duplicate a version.

A worker SIGKILLed (``NLSR_FAULT_INJECT``) during realign, during gating or between registration and
aliasing is taken over by a restarted worker once its lease expires: each job ends with exactly one
realigned version and one terminal audit event. Two workers on PostgreSQL drain a burst of 50
registrations exactly once (throughput printed); with the tracking server restarted mid-burst and the
after-request trigger lost for the rest, the poller recovers every version and still nothing is
processed twice.
"""

from __future__ import annotations

import collections
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from mlflow_nlsr.registry.client import RegistryClient
from mlflow_nlsr.registry.models import log_local_model
from mlflow_nlsr.store.repository import JobStore
from mlflow_nlsr.store.states import TERMINAL_STATES
from tests.mlflow_server import free_port, running_server
from tests.reliability.conftest import TINY_GATES, leftovers, register
from tests.store.conftest import pg_url  # noqa: F401 - a fresh PostgreSQL database per test

pytestmark = pytest.mark.slow
FAULTS = ("realign", "gate", "register")


def write_config(path: Path, pattern: str, good, gates: dict = TINY_GATES) -> Path:
    gate_path = path.with_name("gates.yaml")
    gate_path.write_text(yaml.safe_dump(gates))
    path.write_text(yaml.safe_dump({
        "defaults": {"gate_limit": 1, "realign": {"scorer": "magnitude"}},
        "models": [{"match": pattern, "base_uri": str(good.base), "aligned_uri": str(good.aligned),
                    "gate_config": str(gate_path)}],
    }))
    return path


def start_worker(url: str, store: str, work: Path, config: Path, *, fault: str | None = None,
                 lease: float = 3.0, max_jobs: int | None = 1, idle_exit: float | None = None,
                 log: Path, extra_env: dict[str, str] | None = None) -> subprocess.Popen:
    """`python -m mlflow_nlsr.cli worker …` as a subprocess (optionally with a fault to inject)."""
    env = {k: v for k, v in os.environ.items() if k not in ("NLSR_FAULT_INJECT", "MLFLOW_TRACKING_URI")}
    env.update(OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    env.update(extra_env or {})
    if fault:
        env["NLSR_FAULT_INJECT"] = fault
    cmd = [sys.executable, "-m", "mlflow_nlsr.cli", "worker", "--tracking-uri", url, "--store", store,
           "--work-dir", str(work), "--config", str(config), "--lease", str(lease), "--poll-interval", "0.5",
           "--gate-limit", "1"]
    if max_jobs is not None:
        cmd += ["--max-jobs", str(max_jobs)]
    if idle_exit is not None:
        cmd += ["--idle-exit", str(idle_exit)]
    out = log.open("ab")
    return subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)


def realigned_versions(client: RegistryClient, name: str) -> collections.Counter:
    """source version -> how many realigned versions of `name` claim it."""
    found = client.search_versions(f"name = '{name}' and tags.`nlsr.realigned` = 'true'")
    return collections.Counter(v.tags["nlsr.source_version"] for v in found)


def test_a_worker_killed_at_any_step_is_resumed_to_exactly_one_realigned_version(
    server, good, tmp_path
):
    """One job per fault, each in its own store and work dir; all three crash and recover in parallel."""
    client = RegistryClient(server.url)
    cases = {}
    for fault in FAULTS:
        root = tmp_path / fault
        root.mkdir()
        name = f"crash-{fault}-{os.getpid()}-{int(time.time())}"
        config = write_config(root / "nlsr.yaml", name, good)
        version = register(server.url, good.finetuned, name)
        store = f"sqlite:///{root / 'jobs.db'}"
        with JobStore(store) as s:
            s.enqueue(name, version, "webhook", "test")
        cases[fault] = (root, name, version, store, config)

    crashed = {f: start_worker(server.url, c[3], c[0] / "work", c[4], fault=f, log=c[0] / "crash.log")
               for f, c in cases.items()}
    for fault, proc in crashed.items():
        assert proc.wait(timeout=600) == -9, (fault, (cases[fault][0] / "crash.log").read_text()[-3000:])
    restarted = {f: start_worker(server.url, c[3], c[0] / "work", c[4], log=c[0] / "resume.log")
                 for f, c in cases.items()}
    for fault, proc in restarted.items():
        assert proc.wait(timeout=600) == 0, (fault, (cases[fault][0] / "resume.log").read_text()[-3000:])

    for fault, (root, name, version, store, _) in cases.items():
        with JobStore(store) as s:
            job = s.get(name, version)
            events = [e.event for e in s.audit_trail(name, version)]
        assert job.state.value == "promoted" and job.attempts == 2, (fault, job.state, events)
        assert events[:2] == ["enqueued", "claimed"] and "reclaimed" in events, (fault, events)
        assert sum(e in {s.value for s in TERMINAL_STATES} for e in events) == 1, (fault, events)
        assert events[-1] == "promoted", (fault, events)
        assert realigned_versions(client, name) == {version: 1}, fault
        assert client.get_alias_version(name, "safe").version == job.realigned_version, fault
        assert leftovers(root / "work") == [], fault


# -- two workers on PostgreSQL against a burst ---------------------------------------------------
def burst_server_env(store: str, root: Path, *, trigger: bool = True) -> dict[str, str]:
    return {"NLSR_STORE_URL": store, "NLSR_WORK_DIR": str(root / "app"),
            "NLSR_APP_TRIGGER": "1" if trigger else "0"}


def register_versions(url: str, name: str, model_id: str, count: int) -> list[str]:
    """Register the one uploaded LoggedModel `count` more times as versions of `name`."""
    client = RegistryClient(url)
    return [client.create_version(name, f"models:/{model_id}", model_id=model_id).version
            for _ in range(count)]


def drain(workers: list[subprocess.Popen], logs: list[Path]) -> None:
    for proc, log in zip(workers, logs, strict=True):
        assert proc.wait(timeout=1500) == 0, log.read_text()[-3000:]


def assert_exactly_once(store: JobStore, client: RegistryClient, name: str, versions: list[str]) -> None:
    jobs = {j.version: j for j in store.list_jobs(name)}
    assert sorted(jobs, key=int) == sorted(versions, key=int), "one job per registered version"
    states = collections.Counter(j.state.value for j in jobs.values())
    # a repair of an older source version that finishes after a newer one was promoted is registered,
    # never promoted: the alias only moves forwards, so it ends on the newest promoted source version
    assert set(states) <= {"promoted", "registered"} and states["promoted"] >= 1, states
    newest = max((j for j in jobs.values() if j.state.value == "promoted"), key=lambda j: int(j.version))
    assert client.get_alias_version(name, "safe").version == newest.realigned_version
    assert all(int(j.version) < int(newest.version) for j in jobs.values() if j.state.value == "registered")
    assert realigned_versions(client, name) == {v: 1 for v in versions}, "one realigned version each"
    for v in versions:
        terminal = [e for e in store.audit_trail(name, v) if e.decision in {s.value for s in TERMINAL_STATES}]
        assert len(terminal) == 1, (v, [e.event for e in store.audit_trail(name, v)])


def throughput(store: JobStore, name: str) -> tuple[float, float]:
    jobs = store.list_jobs(name)
    start = min(j.created_at for j in jobs)
    end = max(j.updated_at for j in jobs)
    seconds = (end - start).total_seconds()
    return seconds, len(jobs) / (seconds / 60.0)


@pytest.mark.postgres
def test_two_workers_on_postgres_process_a_burst_of_50_registrations_exactly_once(
    pg_url, good, tmp_path  # noqa: F811
):
    root = tmp_path
    name = "burst"
    config = write_config(root / "nlsr.yaml", name, good)
    (root / "srv").mkdir()
    with running_server(root / "srv", app_name="nlsr", extra_env=burst_server_env(pg_url, root)) as srv:
        client = RegistryClient(srv.url)
        model_id, first = log_local_model(good.finetuned, name="burst-ft", registered_model_name=name,
                                          client=client)
        versions = [first.version, *register_versions(srv.url, name, model_id, 49)]
        logs = [root / f"worker{i}.log" for i in range(2)]
        workers = [start_worker(srv.url, pg_url, root / "work", config, lease=60, max_jobs=None,
                                idle_exit=15, log=log) for log in logs]
        drain(workers, logs)
        with JobStore(pg_url) as store:
            assert_exactly_once(store, client, name, versions)
            seconds, per_min = throughput(store, name)
            by_worker = collections.Counter(j.lease_owner or "" for j in store.list_jobs(name))
            claims = collections.Counter(e.actor for e in store.audit_trail(name) if e.event == "claimed")
    print(f"\nBURST: 50 versions, 2 workers, PostgreSQL: {seconds:.0f} s, {per_min:.1f} jobs/min; "
          f"claims per worker {dict(claims)}")
    assert len(claims) == 2, f"both workers took jobs: {dict(claims)} {by_worker}"


@pytest.mark.postgres
def test_a_tracking_server_restarted_mid_burst_loses_no_version(pg_url, good, tmp_path):  # noqa: F811
    root = tmp_path
    name = "burst-restart"
    config = write_config(root / "nlsr.yaml", name, good)
    port = free_port()
    srv_root = root / "srv"
    srv_root.mkdir()
    logs = [root / f"worker{i}.log" for i in range(2)]
    env = burst_server_env(pg_url, root)
    with running_server(srv_root, app_name="nlsr", port=port, extra_env=env) as srv:
        url = srv.url
        model_id, first = log_local_model(good.finetuned, name="burst-ft", registered_model_name=name,
                                          client=RegistryClient(url))
        versions = [first.version, *register_versions(url, name, model_id, 14)]
        # MLflow's client retries refused connections with backoff 2 s * 2^n; 1 s keeps the test short
        retry_env = {"MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1"}
        workers = [start_worker(url, pg_url, root / "work", config, lease=60, max_jobs=None,
                                idle_exit=30, log=log, extra_env=retry_env) for log in logs]
        with JobStore(pg_url) as store:  # let the workers get going, then pull the server away
            deadline = time.monotonic() + 600
            while not store.list_jobs(name, states=["promoted"]) and time.monotonic() < deadline:
                time.sleep(1)
    # down: the workers' MLflow calls retry; restarted without the after-request trigger (lost events)
    with running_server(srv_root, app_name="nlsr", port=port,
                        extra_env=burst_server_env(pg_url, root, trigger=False)) as srv:
        client = RegistryClient(url)
        versions += register_versions(url, name, model_id, 15)
        with JobStore(pg_url) as store:
            assert len(store.list_jobs(name)) == 15, "the restarted server queued nothing"
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        watch = subprocess.run(
            [sys.executable, "-m", "mlflow_nlsr.cli", "watch", "--once", "--since", "all", "--json",
             "--tracking-uri", url,
             "--store", pg_url, "--work-dir", str(root / "work")],
            capture_output=True, text=True, timeout=300, env=env)
        assert watch.returncode == 0, watch.stderr
        drain(workers, logs)
        with JobStore(pg_url) as store:
            assert_exactly_once(store, client, name, versions)
            triggers = collections.Counter(j.trigger.value for j in store.list_jobs(name))
            retries = sum(e.event == "retry" for e in store.audit_trail(name))
            seconds, per_min = throughput(store, name)
    assert triggers == {"app": 15, "poller": 15}, triggers
    print(f"\nRESTART BURST: 30 versions (15 lost triggers recovered by the poller), 2 workers: "
          f"{seconds:.0f} s, {per_min:.1f} jobs/min, {retries} job retries")
