"""`mlflow nlsr gc` removes settled jobs' work dirs at once and failed ones only after --failed-days."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

from click.testing import CliRunner

from mlflow_nlsr.cli import cli
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
