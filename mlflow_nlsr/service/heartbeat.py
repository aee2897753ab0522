"""Lease heartbeats: a running job keeps its lease; a lost lease stops the job before it writes."""

from __future__ import annotations

import threading

from mlflow_nlsr.errors import JobStoreError
from mlflow_nlsr.store.repository import JobStore


class LeaseLost(JobStoreError):
    """Another worker took the job over (our lease expired); stop without touching it."""


class Heartbeat:
    """Extend the job's lease in the background; remember if it was lost."""

    def __init__(self, store: JobStore, job_id: int, worker: str, lease: float) -> None:
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._args = (store, job_id, worker, lease)
        self._thread = threading.Thread(target=self._beat, daemon=True, name=f"nlsr-heartbeat-{job_id}")

    def _beat(self) -> None:
        store, job_id, worker, lease = self._args
        while not self._stop.wait(max(lease / 3.0, 0.5)):
            try:
                store.heartbeat(job_id, worker, lease)
            except JobStoreError:
                self.lost.set()
                return

    def check(self) -> None:
        """Raise LeaseLost when another worker owns the job now."""
        if self.lost.is_set():
            raise LeaseLost("lease lost: another worker took over this job")

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
