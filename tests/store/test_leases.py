"""A dead worker's job is reclaimed after its lease expires (keeping realigned/gated so the service
resumes), the old worker then loses every call with "lease lost", and failures retry with exponential
backoff until max_attempts, then end in failed."""

from __future__ import annotations

from datetime import timedelta

import pytest

from mlflow_nlsr.errors import JobStoreError
from mlflow_nlsr.store import JobState


def test_a_live_lease_blocks_other_workers(store, clock):
    store.enqueue("chat", 1, "cli", "alice")
    assert store.claim("w1", 30) is not None
    clock.advance(29)
    assert store.claim("w2", 30) is None


def test_expired_lease_lets_another_worker_reclaim_and_the_first_loses_it(store, clock):
    job, _ = store.enqueue("chat", 1, "cli", "alice")
    store.claim("w1", 30)
    clock.advance(31)
    taken = store.claim("w2", 30)
    assert taken.id == job.id and taken.lease_owner == "w2" and taken.attempts == 2
    with pytest.raises(JobStoreError, match="lease lost.*held by 'w2', not 'w1'"):
        store.heartbeat(job.id, "w1", 30)
    with pytest.raises(JobStoreError, match="lease lost"):
        store.advance(job.id, "w1", "realigned")
    with pytest.raises(JobStoreError, match="lease lost"):
        store.fail(job.id, "w1", "boom", retry=True)
    reclaim = store.audit_trail("chat", 1)[-1]
    assert reclaim.event == "reclaimed" and reclaim.actor == "w2"
    assert reclaim.inputs["previous_owner"] == "w1" and reclaim.inputs["resumed_state"] == "running"


def test_heartbeat_keeps_the_lease_alive(store, clock):
    job, _ = store.enqueue("chat", 1, "cli", "alice")
    store.claim("w1", 30)
    for _ in range(4):
        clock.advance(20)
        beat = store.heartbeat(job.id, "w1", 30)
        assert beat.heartbeat_at == clock.now
        assert store.claim("w2", 30) is None
    assert beat.lease_expires_at == clock.now + timedelta(seconds=30)
    assert store.get("chat", 1).lease_expires_at == clock.now + timedelta(seconds=30)


@pytest.mark.parametrize("crashed_in", ["realigned", "gated"])
def test_reclaimed_job_keeps_its_progress_state(store, clock, crashed_in):
    job, _ = store.enqueue("chat", 1, "cli", "alice")
    store.claim("w1", 30)
    store.advance(job.id, "w1", "realigned", realigned_version=2)
    if crashed_in == "gated":
        store.advance(job.id, "w1", "gated")
    clock.advance(60)  # w1 died without a heartbeat
    resumed = store.claim("w2", 30)
    assert resumed.state.value == crashed_in and resumed.realigned_version == "2"
    finished = store.finish(job.id, "w2", "rejected", reasons=["refusal 0.1 < 0.5"])
    assert finished.state is JobState.REJECTED


def test_failures_back_off_exponentially_then_fail_after_max_attempts(store, clock):
    job, _ = store.enqueue("chat", 1, "cli", "alice")
    delays = []
    for attempt in (1, 2):
        claimed = store.claim("w1", 30)
        assert claimed.attempts == attempt
        failed = store.fail(job.id, "w1", f"transient {attempt}", retry=True)
        assert failed.state is JobState.QUEUED and failed.lease_owner is None
        delay = (failed.not_before - clock.now).total_seconds()
        delays.append(delay)
        clock.advance(delay - 1)
        assert store.claim("w1", 30) is None, "claimed before the backoff elapsed"
        clock.advance(1)
    assert delays == [10.0, 20.0]
    store.claim("w1", 30)
    final = store.fail(job.id, "w1", "transient 3", retry=True)
    assert final.state is JobState.FAILED and final.last_error == "transient 3"
    clock.advance(3600)
    assert store.claim("w1", 30) is None
    trail = store.audit_trail("chat", 1)
    assert [e.event for e in trail].count("retry") == 2
    assert trail[-1].decision == "failed"
    assert trail[-1].reasons == ["transient 3", "gave up after 3 of 3 attempts"]


def test_backoff_is_capped(store_url, clock):
    from mlflow_nlsr.store import JobStore

    with JobStore(store_url, clock=clock, max_attempts=10, backoff_base_s=10, backoff_max_s=25) as store:
        job, _ = store.enqueue("chat", 1, "cli", "alice")
        delays = []
        for _ in range(4):
            store.claim("w1", 30)
            failed = store.fail(job.id, "w1", "again", retry=True)
            delays.append((failed.not_before - clock.now).total_seconds())
            clock.advance(delays[-1])
        assert delays == [10.0, 20.0, 25.0, 25.0]


def test_non_retryable_failure_is_terminal_at_once(store):
    job, _ = store.enqueue("chat", 1, "cli", "alice")
    store.claim("w1", 30)
    failed = store.fail(job.id, "w1", "shape mismatch in layer 3", retry=False)
    assert failed.state is JobState.FAILED and failed.attempts == 1
    assert store.audit_trail("chat", 1)[-1].reasons == ["shape mismatch in layer 3"]


def test_retry_after_realign_resumes_from_realigned(store, clock):
    job, _ = store.enqueue("chat", 1, "cli", "alice")
    store.claim("w1", 30)
    store.advance(job.id, "w1", "realigned")
    store.fail(job.id, "w1", "gate server unreachable", retry=True)
    clock.advance(10)
    again = store.claim("w2", 30)
    assert again.state is JobState.REALIGNED and again.attempts == 2


def test_a_job_whose_last_attempt_died_is_failed_by_the_next_claim(store, clock):
    job, _ = store.enqueue("chat", 1, "cli", "alice")
    for _ in range(3):
        assert store.claim("w1", 30).id == job.id
        clock.advance(31)
    assert store.claim("w2", 30) is None
    dead = store.get("chat", 1)
    assert dead.state is JobState.FAILED and dead.lease_owner is None
    assert "after 3 of 3 attempts" in dead.last_error
    assert store.audit_trail("chat", 1)[-1].actor == "nlsr-store"
