"""One job per (model, version): enqueue is idempotent, owned jobs move only along the transition table,
and terminal jobs release their lease."""

from __future__ import annotations

import pytest

from mlflow_nlsr.errors import JobStoreError
from mlflow_nlsr.store import JobState, Trigger


def test_second_enqueue_returns_the_existing_job_and_audits_a_duplicate(store):
    first, created = store.enqueue("chat", 3, "webhook", "mlflow-webhook")
    again, created_again = store.enqueue("chat", "3", Trigger.POLLER, "poller")
    assert created and not created_again
    assert again.id == first.id
    assert again.trigger is Trigger.WEBHOOK
    assert len(store.list_jobs()) == 1
    events = [e.event for e in store.audit_trail("chat", 3)]
    assert events == ["enqueued", "duplicate"]
    assert store.audit_trail("chat", 3)[1].inputs == {"trigger": "poller"}


def test_enqueued_job_starts_queued_with_defaults(store, clock):
    job, _ = store.enqueue("chat", 1, "cli", "alice")
    assert job.state is JobState.QUEUED
    assert (job.attempts, job.max_attempts) == (0, 3)
    assert job.lease_owner is None and job.not_before is None
    assert job.created_at == clock.now == job.updated_at


def test_versions_of_the_same_model_are_separate_jobs(store):
    a, _ = store.enqueue("chat", 1, "cli", "alice")
    b, _ = store.enqueue("chat", 2, "cli", "alice")
    c, _ = store.enqueue("other", 1, "cli", "alice")
    assert len({a.id, b.id, c.id}) == 3
    assert [j.version for j in store.list_jobs(model_name="chat")] == ["1", "2"]
    assert store.get("other", 1).id == c.id
    assert store.get("other", 2) is None


def test_unknown_trigger_is_refused_and_nothing_is_queued(store):
    with pytest.raises(JobStoreError, match="unknown trigger"):
        store.enqueue("chat", 1, "email", "alice")
    assert store.list_jobs() == []


def test_full_lifecycle_records_fields_and_releases_the_lease(store):
    job, _ = store.enqueue("chat", 1, "app", "alice")
    claimed = store.claim("w1", 60)
    assert claimed.id == job.id and claimed.state is JobState.RUNNING and claimed.attempts == 1
    store.advance(job.id, "w1", "realigned", config_sha256="ab" * 32, realigned_version=7)
    store.advance(job.id, "w1", JobState.GATED)
    done = store.finish(job.id, "w1", "promoted", result={"verdict": "pass", "refusal": 0.9}, reasons=["ok"])
    assert done.state is JobState.PROMOTED and done.lease_owner is None and done.lease_expires_at is None
    stored = store.get("chat", 1)
    assert stored.realigned_version == "7"
    assert stored.config_sha256 == "ab" * 32
    assert stored.result == {"refusal": 0.9, "verdict": "pass"}
    trail = store.audit_trail("chat", 1)
    assert [e.event for e in trail] == ["enqueued", "claimed", "realigned", "gated", "promoted"]
    assert trail[-1].decision == "promoted" and trail[-1].reasons == ["ok"]
    assert trail[2].inputs == {"from": "running", "to": "realigned", "config_sha256": "ab" * 32,
                               "realigned_version": 7}  # fmt: skip


def test_illegal_transition_names_from_and_to_and_changes_nothing(store):
    job, _ = store.enqueue("chat", 1, "cli", "alice")
    store.claim("w1", 60)
    with pytest.raises(JobStoreError, match="from 'running' to 'promoted'"):
        store.advance(job.id, "w1", "promoted")
    assert store.get("chat", 1).state is JobState.RUNNING
    assert [e.event for e in store.audit_trail("chat", 1)] == ["enqueued", "claimed"]


def test_finish_refuses_a_non_terminal_state(store):
    job, _ = store.enqueue("chat", 1, "cli", "alice")
    store.claim("w1", 60)
    with pytest.raises(JobStoreError, match="terminal state"):
        store.finish(job.id, "w1", "realigned")


def test_unknown_fields_are_refused(store):
    job, _ = store.enqueue("chat", 1, "cli", "alice")
    store.claim("w1", 60)
    with pytest.raises(JobStoreError, match="unknown job fields \\['attempts'\\]"):
        store.advance(job.id, "w1", "realigned", attempts=0)
    assert store.get("chat", 1).attempts == 1


def test_only_the_lease_owner_may_advance(store):
    job, _ = store.enqueue("chat", 1, "cli", "alice")
    store.claim("w1", 60)
    with pytest.raises(JobStoreError, match="lease lost.*held by 'w1', not 'w2'"):
        store.advance(job.id, "w2", "realigned")
    with pytest.raises(JobStoreError, match="lease lost"):
        store.heartbeat(job.id, "w2", 60)


def test_a_finished_job_accepts_no_further_calls(store):
    job, _ = store.enqueue("chat", 1, "cli", "alice")
    store.claim("w1", 60)
    store.finish(job.id, "w1", "skipped", reasons=["no nlsr rule matches 'chat'"])
    with pytest.raises(JobStoreError, match="already skipped"):
        store.heartbeat(job.id, "w1", 60)
    assert store.claim("w1", 60) is None


def test_list_jobs_filters_by_state(store):
    for version in (1, 2, 3):
        store.enqueue("chat", version, "poller", "poller")
    first = store.claim("w1", 60)
    assert [j.id for j in store.list_jobs(states=["running"])] == [first.id]
    assert [j.version for j in store.list_jobs(states=[JobState.QUEUED])] == ["2", "3"]
    with pytest.raises(JobStoreError, match="unknown job state"):
        store.list_jobs(states=["done"])


def test_claim_can_target_one_job(store):
    store.enqueue("chat", 1, "cli", "alice")
    second, _ = store.enqueue("chat", 2, "cli", "alice")
    claimed = store.claim("cli-run", 60, job_id=second.id)
    assert claimed.id == second.id
    assert store.claim("cli-run", 60, job_id=second.id) is None
    assert store.get("chat", 1).state is JobState.QUEUED


def test_claim_on_an_empty_store_returns_none(store):
    assert store.claim("w1", 60) is None
    with pytest.raises(JobStoreError, match="lease_seconds > 0"):
        store.claim("w1", 0)


def test_jobs_survive_reopening_the_store(store_url):
    from mlflow_nlsr.store import open_store

    with open_store(store_url) as first:
        job, _ = first.enqueue("chat", 1, "cli", "alice")
        first.claim("w1", 60)
        first.advance(job.id, "w1", "realigned", result={"out": "/tmp/x"})
    with open_store(store_url) as second:
        again = second.get("chat", 1)
        assert again.state is JobState.REALIGNED and again.result == {"out": "/tmp/x"}
        assert again.lease_owner == "w1"


def test_a_cancelled_running_job_is_audited_and_its_worker_loses_the_lease(store):
    job, _ = store.enqueue("chat", 1, "app", "alice")
    store.claim("w1", 60)
    cancelled = store.cancel("chat", 1, actor="bob", reason="wrong base model")
    assert cancelled.state is JobState.CANCELLED and cancelled.lease_owner is None
    with pytest.raises(JobStoreError, match="lease lost"):
        store.heartbeat(job.id, "w1", 60)
    with pytest.raises(JobStoreError, match="lease lost"):
        store.advance(job.id, "w1", JobState.REALIGNED)
    (event,) = [e for e in store.audit_trail("chat", 1) if e.event == "cancelled"]
    assert event.actor == "bob" and event.decision == "cancelled"
    assert event.reasons == ["wrong base model"] and event.inputs["lease_owner"] == "w1"
    assert store.claim("w2", 60) is None, "a cancelled job is never claimed again"


def test_a_finished_job_cannot_be_cancelled(store):
    job, _ = store.enqueue("chat", 1, "app", "alice")
    store.claim("w1", 60)
    store.finish(job.id, "w1", JobState.SKIPPED, reasons=["no rule"])
    with pytest.raises(JobStoreError, match="already skipped"):
        store.cancel("chat", 1, actor="bob")
