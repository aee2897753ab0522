"""Worker entry points for the multiprocessing race tests (importable by spawned children)."""

from __future__ import annotations

import time
from typing import Any

from mlflow_nlsr.store import JobStore


def claim_until_empty(url: str, worker_id: str, barrier: Any, results: Any) -> None:
    """Open the store, wait for every racer, then claim and finish jobs until none is left."""
    claimed: list[int] = []
    try:
        with JobStore(url) as store:
            barrier.wait(timeout=120)
            while (job := store.claim(worker_id, lease_seconds=120)) is not None:
                claimed.append(job.id)
                time.sleep(0.01)  # a sliver of "work" outside any transaction lets the other racers in
                store.finish(job.id, worker_id, "skipped", reasons=[f"claimed by {worker_id}"])
        results.put((worker_id, claimed, None))
    except Exception as exc:  # the parent must see a child's failure, not a hang
        results.put((worker_id, claimed, repr(exc)))


def open_at_once(url: str, worker_id: str, barrier: Any, results: Any) -> None:
    """Wait for every racer, then open (and so migrate) the same fresh store."""
    try:
        barrier.wait(timeout=120)
        with JobStore(url) as store:
            results.put((worker_id, store.migrate(), None))
    except Exception as exc:  # the parent must see a child's failure, not a hang
        results.put((worker_id, None, repr(exc)))


def enqueue_all(url: str, worker_id: str, barrier: Any, results: Any, count: int = 20) -> None:
    """Wait for every racer, enqueue the same ``count`` versions, report those this worker created."""
    created: list[str] = []
    try:
        with JobStore(url) as store:
            barrier.wait(timeout=120)
            for version in range(1, count + 1):
                job, new = store.enqueue("burst", version, "webhook", worker_id)
                if new:
                    created.append(job.version)
        results.put((worker_id, created, None))
    except Exception as exc:  # the parent must see a child's failure, not a hang
        results.put((worker_id, created, repr(exc)))


def claim_and_hang(url: str, worker_id: str, lease_seconds: float, results: Any) -> None:
    """Claim one job with a short lease, advance it to realigned, report it, then hang until killed."""
    with JobStore(url) as store:
        job = store.claim(worker_id, lease_seconds=lease_seconds)
        if job is not None:
            store.advance(job.id, worker_id, "realigned")
        results.put(None if job is None else job.id)
        time.sleep(600)
