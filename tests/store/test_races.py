"""Racing workers never share a job: threads and processes claiming M jobs on SQLite and PostgreSQL claim
each exactly once; concurrent enqueues create each job once; concurrent first starts migrate once."""

from __future__ import annotations

import multiprocessing
import queue
import threading
import time
from collections import Counter
from typing import Any

import pytest
from sqlalchemy import text

from mlflow_nlsr.store import JobState, JobStore, head_revision
from tests.store import _workers

JOBS = 40
WORKERS = 4


def _race(target, url: str, workers: int = WORKERS) -> dict[str, Any]:
    """Run ``target`` in ``workers`` spawned processes started together; return worker_id -> payload."""
    # forkserver: children fork from a clean server that imported the store once (no inherited
    # connections, unlike fork; no per-child import cost, unlike spawn).
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload([_workers.__name__])
    barrier, results = ctx.Barrier(workers), ctx.Queue()
    procs = [
        ctx.Process(target=target, args=(url, f"proc-{i}", barrier, results), daemon=True)
        for i in range(workers)
    ]
    for proc in procs:
        proc.start()
    try:
        out = [results.get(timeout=180) for _ in procs]
    finally:
        for proc in procs:
            proc.join(timeout=30)
            if proc.is_alive():
                proc.kill()
    errors = [f"{wid}: {err}" for wid, _, err in out if err]
    assert not errors, errors
    return {wid: payload for wid, payload, _ in out}


def _fill(url: str, count: int = JOBS) -> set[int]:
    with JobStore(url) as store:
        return {store.enqueue("burst", v, "webhook", "test")[0].id for v in range(1, count + 1)}


def _assert_each_claimed_once(url: str, expected: set[int], claims: list[int]) -> None:
    counts = Counter(claims)
    assert [job_id for job_id, n in counts.items() if n > 1] == []
    assert set(counts) == expected
    with JobStore(url) as store:
        assert {j.state for j in store.list_jobs()} == {JobState.SKIPPED}
        claimed_events = Counter(e.job_id for e in store.audit_trail() if e.event == "claimed")
        assert claimed_events == Counter(dict.fromkeys(expected, 1))


@pytest.mark.parametrize("shared_store", [True, False], ids=["one-store", "store-per-thread"])
def test_threads_claim_every_sqlite_job_exactly_once(sqlite_store_url, shared_store):
    expected = _fill(sqlite_store_url)
    shared = JobStore(sqlite_store_url)
    barrier = threading.Barrier(WORKERS)
    claims: queue.Queue[int] = queue.Queue()
    errors: queue.Queue[str] = queue.Queue()

    def work(worker_id: str) -> None:
        store = shared if shared_store else JobStore(sqlite_store_url)
        try:
            barrier.wait(timeout=60)
            while (job := store.claim(worker_id, 120)) is not None:
                claims.put(job.id)
                store.finish(job.id, worker_id, "skipped")
        except Exception as exc:  # surfaced by the assertion below
            errors.put(repr(exc))

    threads = [threading.Thread(target=work, args=(f"thread-{i}",)) for i in range(WORKERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    shared.close()
    assert list(errors.queue) == []
    _assert_each_claimed_once(sqlite_store_url, expected, list(claims.queue))


def test_processes_claim_every_job_exactly_once(store_url):
    expected = _fill(store_url)
    by_worker = _race(_workers.claim_until_empty, store_url)
    claims = [job_id for ids in by_worker.values() for job_id in ids]
    print({worker: len(ids) for worker, ids in sorted(by_worker.items())})  # shown with -s: the contention
    _assert_each_claimed_once(store_url, expected, claims)


def test_concurrent_enqueues_create_each_job_once(store_url):
    JobStore(store_url).close()  # migrate first: this test races enqueues, not migrations
    by_worker = _race(_workers.enqueue_all, store_url)
    created = [version for versions in by_worker.values() for version in versions]
    assert sorted(created, key=int) == [str(v) for v in range(1, 21)]
    with JobStore(store_url) as store:
        assert len(store.list_jobs()) == 20
        events = Counter(e.event for e in store.audit_trail())
        assert events == {"enqueued": 20, "duplicate": 20 * (WORKERS - 1)}


def test_processes_starting_at_once_migrate_the_fresh_store_once(store_url):
    revisions = _race(_workers.open_at_once, store_url)
    assert set(revisions.values()) == {head_revision()}
    with JobStore(store_url, auto_migrate=False) as store, store.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM nlsr_alembic_version")).scalar() == 1


def test_a_sigkilled_worker_job_is_resumed_by_another_after_its_lease(store_url):
    (job_id,) = _fill(store_url, count=1)
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload([_workers.__name__])
    results = ctx.Queue()
    lease = 1.0
    victim = ctx.Process(
        target=_workers.claim_and_hang, args=(store_url, "doomed", lease, results), daemon=True
    )
    victim.start()
    try:
        assert results.get(timeout=120) == job_id
    finally:
        victim.kill()  # SIGKILL: no cleanup, no lease release
        victim.join(timeout=30)
    with JobStore(store_url) as store:
        deadline = time.monotonic() + 10 * lease
        job = None
        while job is None and time.monotonic() < deadline:
            job = store.claim("survivor", 30)
            time.sleep(0 if job else 0.1)
        assert job is not None and job.id == job_id
        assert job.state is JobState.REALIGNED and job.attempts == 2
        store.advance(job_id, "survivor", "gated")
        store.finish(job_id, "survivor", "promoted")
        events = [(e.event, e.actor) for e in store.audit_trail("burst", 1)]
    assert events == [
        ("enqueued", "test"), ("claimed", "doomed"), ("realigned", "doomed"),
        ("reclaimed", "survivor"), ("gated", "survivor"), ("promoted", "survivor"),
    ]  # fmt: skip
