"""Retention: a worker drops a settled job's work dir; `mlflow nlsr gc` removes the rest.

gc removes settled jobs' work dirs at once, failed ones only after --failed-days, cached references
that no active job uses and none used for as long (registry/cache.py), and, while no job runs, reference
gate results no job reused for as long.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from datetime import datetime, timedelta, timezone

import pytest
from click.testing import CliRunner

from mlflow_nlsr.cli import cli
from mlflow_nlsr.errors import ConfigError
from mlflow_nlsr.io.hashing import sha256_dir
from mlflow_nlsr.rules import Retention, Rules
from mlflow_nlsr.service.retention import collect, note_references, release_work_dir
from mlflow_nlsr.service.settings import job_work_dir
from mlflow_nlsr.store import JobState, JobStore


def _job(store, version, end_state, work):
    job, _ = store.enqueue("chat", version, "cli", "alice")
    store.claim("w1", 60, job_id=job.id)
    if end_state is JobState.PROMOTED:
        for state in ("realigned", "gated"):
            store.advance(job.id, "w1", state)
        store.finish(job.id, "w1", end_state)
    else:
        store.fail(job.id, "w1", "boom", retry=False)
    path = job_work_dir(work, "chat", version) / "realigned"
    path.mkdir(parents=True)
    (path / "weights.bin").write_bytes(b"x" * 1000)
    return path.parent


def test_gc_removes_succeeded_work_dirs_and_failed_ones_only_when_old(tmp_path):
    work, url = tmp_path / "work", f"sqlite:///{tmp_path / 'jobs.db'}"
    long_ago = datetime.now(timezone.utc) - timedelta(days=30)
    with JobStore(url, clock=lambda: long_ago) as old_store:
        old_failure = _job(old_store, 1, JobState.FAILED, work)
    with JobStore(url) as store:
        promoted = _job(store, 2, JobState.PROMOTED, work)
        fresh_failure = _job(store, 3, JobState.FAILED, work)
    args = ["gc", "--store", url, "--work-dir", str(work), "--json"]

    dry = CliRunner().invoke(cli, [*args, "--dry-run"])
    assert dry.exit_code == 0 and old_failure.exists() and promoted.exists()
    result = CliRunner().invoke(cli, args)

    report = json.loads(result.stdout)
    assert sorted(report["removed"]) == sorted([str(old_failure), str(promoted)])
    assert report["freed_bytes"] == 2000
    assert not old_failure.exists() and not promoted.exists() and fresh_failure.exists()


def _settled(store, version, state):
    job, _ = store.enqueue("chat", version, "cli", "alice")
    store.claim("w1", 60, job_id=job.id)
    if state is JobState.FAILED:
        return store.fail(job.id, "w1", "boom", retry=False)
    for step in ("realigned", "gated"):
        store.advance(job.id, "w1", step)
    return store.finish(job.id, "w1", state)


@pytest.mark.parametrize(
    ("state", "retention", "removed"),
    [
        (JobState.PROMOTED, Retention(), True),
        (JobState.REJECTED, Retention(), True),
        (JobState.AWAITING_APPROVAL, Retention(), True),
        (JobState.PROMOTED, Retention(keep_work_dir=True), False),
        (JobState.FAILED, Retention(), False),
    ],
)
def test_a_settled_jobs_work_dir_goes_unless_it_failed_or_retention_keeps_it(tmp_path, state, retention,
                                                                               removed):  # fmt: skip
    with JobStore(f"sqlite:///{tmp_path / 'jobs.db'}") as store:
        job = _settled(store, 1, state)
    path = job_work_dir(tmp_path / "work", "chat", 1)
    (path / "realigned").mkdir(parents=True)

    assert release_work_dir(tmp_path / "work", job, retention) is removed
    assert path.exists() is not removed


def test_nlsr_yaml_retention_is_validated():
    rules = Rules.from_mapping({"retention": {"keep_work_dir": True, "failed_days": 2}})
    assert rules.retention == Retention(True, 2.0)
    assert Rules.from_mapping({}).retention == Retention(False, 7.0)
    for bad in ({"keep_work_dir": "no"}, {"failed_days": -1}, {"keep": True}):
        with pytest.raises(ConfigError, match="retention"):
            Rules.from_mapping({"retention": bad})


def _entry(root, name, age_days, size=100):
    """A cache entry `name` (a dir and its manifest) last used `age_days` ago."""
    (root / name).mkdir(parents=True)
    (root / name / "adapter_model.safetensors").write_bytes(b"w" * size)
    manifest = root / f"{name}.json"
    manifest.write_text(json.dumps({"files": {"adapter_model.safetensors": size}}))
    when = time.time() - age_days * 86400
    os.utime(manifest, (when, when))
    return root / name


def test_gc_drops_references_no_active_job_used_for_failed_days(tmp_path):
    work, url = tmp_path / "work", f"sqlite:///{tmp_path / 'jobs.db'}"
    root = work / "references"
    stale, recent, held = _entry(root, "a" * 64, 30), _entry(root, "b" * 64, 1), _entry(root, "c" * 64, 30)
    (root / "index").mkdir()
    (root / "index" / "k.json").write_text(json.dumps({"sha256": "a" * 64}))
    (root / ".partial" / "dead-worker").mkdir(parents=True)
    os.utime(root / ".partial" / "dead-worker", (0, 0))
    with JobStore(url) as store:
        running, _ = store.enqueue("chat", 9, "cli", "alice")
        store.claim("w1", 60, job_id=running.id)
    note_references(job_work_dir(work, "chat", 9), [held, tmp_path / "a-local-dir"])

    report = collect(JobStore(url), work, failed_days=7)

    assert sorted(report.removed) == sorted([str(stale), str(root / ".partial" / "dead-worker")])
    assert report.freed_bytes == 100
    assert not stale.exists() and not (root / f"{stale.name}.json").exists()
    assert not (root / "index" / "k.json").exists(), "the index no longer points at a removed entry"
    assert recent.exists() and held.exists(), "used lately, or by a running job"


def test_gc_verify_references_removes_an_entry_whose_content_changed_and_reads_failed_days(tmp_path):
    work, url = tmp_path / "work", f"sqlite:///{tmp_path / 'jobs.db'}"
    model = _entry(tmp_path / "src", "model", 0)
    good = work / "references" / sha256_dir(model)
    shutil.copytree(model, good)
    shutil.copy(tmp_path / "src" / "model.json", good.with_suffix(".json"))
    ten_days_ago = time.time() - 10 * 86400
    os.utime(good.with_suffix(".json"), (ten_days_ago, ten_days_ago))  # kept: nlsr.yaml says 30 days
    bad = _entry(work / "references", "d" * 64, 0)  # content does not hash to its name
    config = tmp_path / "nlsr.yaml"
    config.write_text("retention: {failed_days: 30}\n")
    JobStore(url).close()
    args = ["gc", "--store", url, "--work-dir", str(work), "--config", str(config), "--json"]

    dry = json.loads(CliRunner().invoke(cli, [*args, "--verify-references", "--dry-run"]).stdout)
    assert dry["damaged"] == [str(bad)] and dry["removed"] == [str(bad)] and bad.exists()
    report = json.loads(CliRunner().invoke(cli, [*args, "--verify-references"]).stdout)

    assert report["damaged"] == [str(bad)] and report["removed"] == [str(bad)]
    assert good.exists() and not bad.exists()


@pytest.mark.slow
def test_jobs_share_downloaded_references_and_only_a_failed_job_keeps_its_work_dir(
    server, models, references, model_name, make_service, tmp_path
):
    from mlflow_nlsr.registry.client import RegistryClient
    from mlflow_nlsr.registry.models import log_local_model
    from mlflow_nlsr.registry.uris import resolve_to_local
    from tests.service.conftest import PERMISSIVE, write_config

    client = RegistryClient(server.url)
    v1, v2 = (
        log_local_model(models[2], name=model_name, registered_model_name=model_name, client=client)[1]
        for _ in range(2)
    )
    v1, v2 = v1.version, v2.version
    passing = make_service(write_config(tmp_path / "nlsr.yaml", model_name, *references, PERMISSIVE),
                           calibrate=False)  # fmt: skip
    broken = {"suites": ["safety"], "judge": "keyword", "rules": ["asr <= nothing + 1"]}  # fails preflight
    failing = make_service(write_config(tmp_path / "broken.yaml", model_name, *references, broken))
    downloads: list[str] = []
    for svc in (passing, failing):  # two workers on one work dir
        real = svc.client.download_artifacts
        svc.client.download_artifacts = lambda uri, dest, real=real: downloads.append(uri) or real(uri, dest)

    promoted = passing.process_version(model_name, v1)
    failed = failing.process_version(model_name, v2)

    assert (promoted.state, failed.state) == ("promoted", "failed"), failed.reasons
    assert sorted(u for u in downloads if u in references) == sorted(references), "each reference once"
    work = tmp_path / "work"
    assert not job_work_dir(work, model_name, v1).exists(), "a promoted job's dir is removed"
    assert (job_work_dir(work, model_name, v2) / "input").is_dir(), "a failed job's dir is kept"
    output = resolve_to_local(f"models:/{model_name}/{promoted.realigned_version}", tmp_path / "out", client)
    inputs = json.loads((output / "nlsr_report.json").read_text())["inputs"]
    cached = sorted(p.name for p in (work / "references").iterdir() if p.is_dir() and len(p.name) == 64)
    assert cached == sorted([inputs["base"], inputs["aligned"]]), "entries are named by the report's hashes"


def _gate_result(root, name, age_days, *, finished=True):
    entry = root / name
    entry.mkdir(parents=True)
    (entry / "samples.jsonl").write_bytes(b"s" * 10)
    stamp = entry / "metrics.json" if finished else entry
    if finished:
        stamp.write_text("{}")
    when = time.time() - age_days * 86400
    os.utime(stamp, (when, when))
    return entry


def test_gc_drops_reference_gate_results_unused_for_failed_days_only_while_no_job_runs(tmp_path):
    work, url = tmp_path / "work", f"sqlite:///{tmp_path / 'jobs.db'}"
    root = work / "gate-cache"
    stale, recent = _gate_result(root, "stale", 30), _gate_result(root, "recent", 1)
    crashed = _gate_result(root, "crashed", 30, finished=False)
    with JobStore(url) as store:
        running, _ = store.enqueue("chat", 9, "cli", "alice")
        store.claim("w1", 60, job_id=running.id)

    assert collect(JobStore(url), work, failed_days=7).removed == [], "a running job may be reading them"
    with JobStore(url) as store:
        store.fail(running.id, "w1", "boom", retry=False)
    report = collect(JobStore(url), work, failed_days=7)

    assert sorted(report.removed) == sorted([str(stale), str(crashed)])
    assert not stale.exists() and not crashed.exists() and recent.exists()


def test_reusing_a_reference_gate_result_keeps_it_from_gc(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from mlflow_nlsr.service import orchestrator

    model, base = tmp_path / "ft", tmp_path / "base"
    for path in (model, base):
        path.mkdir()
        (path / "config.json").write_text("{}")
    runs = []

    def fake_run_gates(*_args, output_dir, **_kw):
        runs.append(output_dir)
        output_dir.mkdir(parents=True)
        (output_dir / "metrics.json").write_text(json.dumps({"metrics": {"asr": 0.5}}))
        return SimpleNamespace(summary=lambda: {"metrics": {"asr": 0.5}})

    monkeypatch.setattr(orchestrator, "run_gates", fake_run_gates)
    owner = SimpleNamespace(settings=SimpleNamespace(work_dir=tmp_path / "work", gate_batch_size=1))
    config = SimpleNamespace(
        run_kwargs=lambda limit, suites: {"suites": ["safety"]}, baseline_suites=lambda role: []
    )
    gate = orchestrator.NLSRService._gate
    _, entry = gate(owner, "finetuned", model, base, config, None, tmp_path / "job")
    os.utime(entry / "metrics.json", (0, 0))

    metrics, again = gate(owner, "finetuned", model, base, config, None, tmp_path / "job")

    assert again == entry and len(runs) == 1 and metrics["asr"] == 0.5
    assert (entry / "metrics.json").stat().st_mtime > time.time() - 60
    assert collect(JobStore(f"sqlite:///{tmp_path / 'jobs.db'}"), tmp_path / "work").removed == []
