"""Governance in the job store: a tamper-evident audit chain, people's decisions, cancel and requeue,
alias history and poller watermarks — on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import text

from mlflow_nlsr.errors import JobStoreError
from mlflow_nlsr.store import JobState, JobStore
from mlflow_nlsr.store.chain import GENESIS


def _drop_guards(store):
    with store.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("DROP TRIGGER nlsr_audit_no_change ON nlsr_audit_events"))
        else:
            conn.execute(text("DROP TRIGGER nlsr_audit_no_update"))
            conn.execute(text("DROP TRIGGER nlsr_audit_no_delete"))


def _some_events(store):
    job, _ = store.enqueue("chat", 1, "cli", "alice", registered_by="bob")
    store.claim("w1", 30)
    store.advance(job.id, "w1", "realigned")
    store.audit("note", actor="carol", model_name="chat", version=1, inputs={"x": 1.5}, reasons="why")
    return job


def test_every_audit_row_is_chained_to_the_previous_one_and_names_user_and_host(store):
    _some_events(store)
    rows = store.audit_trail()
    assert rows[0].prev_hash == GENESIS
    for before, after in zip(rows, rows[1:], strict=False):
        assert after.prev_hash == before.row_hash and len(after.row_hash) == 64
    assert all(r.host for r in rows)
    assert [r.registered_by for r in rows if r.job_id] == ["bob"] * 3
    report = store.verify_chain()
    assert report.ok and report.checked == 4 and report.unchained == 0


def test_an_edited_audit_row_is_named_by_the_verification(store):
    _some_events(store)
    _drop_guards(store)
    second = store.audit_trail()[1].id
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE nlsr_audit_events SET actor = 'mallory' WHERE id = :id"), {"id": second})
    report = store.verify_chain()
    assert not report.ok and report.broken_id == second
    assert "edited" in report.problem


def test_a_deleted_audit_row_breaks_the_link_of_the_next_row(store):
    _some_events(store)
    _drop_guards(store)
    rows = store.audit_trail()
    with store.engine.begin() as conn:
        conn.execute(text("DELETE FROM nlsr_audit_events WHERE id = :id"), {"id": rows[1].id})
    report = store.verify_chain()
    assert report.broken_id == rows[2].id and "prev_hash" in report.problem


def test_a_parked_job_is_never_claimed_and_only_a_decision_moves_it(store):
    job, _ = store.enqueue("chat", 1, "cli", "alice")
    store.claim("w1", 30)
    for state in ("realigned", "gated"):
        store.advance(job.id, "w1", state)
    store.finish(job.id, "w1", JobState.AWAITING_APPROVAL, result={"promotion": {"alias": "safe"}})
    assert store.claim("w2", 30) is None
    done = store.decide("chat", 1, JobState.PROMOTED, actor="dana", reasons=["looks fine"])
    assert done.state is JobState.PROMOTED and done.approved_by == "dana"
    last = store.audit_trail("chat", 1)[-1]
    assert (last.event, last.actor, last.approved_by) == ("approved", "dana", "dana")
    with pytest.raises(JobStoreError, match="not awaiting"):
        store.decide("chat", 1, JobState.REJECTED, actor="dana")


def test_cancel_stops_a_running_job_and_requeue_starts_it_over(store):
    job, _ = store.enqueue("chat", 1, "cli", "alice")
    store.claim("w1", 30)
    cancelled = store.cancel("chat", 1, actor="ops", reason="wrong base")
    assert cancelled.state is JobState.CANCELLED and cancelled.lease_owner is None
    with pytest.raises(JobStoreError, match="lease lost"):
        store.advance(job.id, "w1", "realigned")
    again = store.requeue("chat", 1, actor="ops")
    assert (again.state, again.attempts, again.last_error) == (JobState.QUEUED, 0, None)
    assert store.claim("w2", 30).id == job.id
    events = [(e.event, e.actor) for e in store.audit_trail("chat", 1)]
    assert ("cancelled", "ops") in events and ("requeued", "ops") in events


def test_only_failed_skipped_or_cancelled_jobs_can_be_requeued(store):
    store.enqueue("chat", 1, "cli", "alice")
    with pytest.raises(JobStoreError, match="only cancelled, failed, skipped"):
        store.requeue("chat", 1, actor="ops")
    with pytest.raises(JobStoreError, match="no job"):
        store.requeue("chat", 2, actor="ops")


def test_alias_moves_are_kept_in_order_with_an_audit_row_each(store):
    for src, dst in ((None, "2"), ("2", "4")):
        with store.alias_lock("chat", "safe") as s:
            store.record_alias_move(
                s, model_name="chat", alias="safe", from_version=src, to_version=dst,
                action="promote", actor="w1",
            )  # fmt: skip
    moves = store.alias_history("chat", "safe")
    assert [(m.from_version, m.to_version) for m in moves] == [(None, "2"), ("2", "4")]
    assert [e.event for e in store.audit_trail("chat")] == ["alias-moved", "alias-moved"]


def test_a_watermark_only_moves_forward(store):
    assert store.watermark("chat") is None
    store.raise_watermark("chat", 2000)
    store.raise_watermark("chat", 1000)
    assert store.watermark("chat") == 2000


def test_events_filter_by_model_and_time_window(store, clock):
    store.audit("a", actor="x", model_name="chat", version=1)
    clock.advance(3600)
    store.audit("b", actor="x", model_name="chat", version=1)
    store.audit("c", actor="x", model_name="other", version=1)
    since = clock.now - timedelta(seconds=1)
    assert [e.event for e in store.events("chat", since=since)] == ["b"]
    assert [e.event for e in store.events(until=since)] == ["a"]


def test_rows_written_before_migration_0002_are_reported_unchained_and_the_chain_starts_after(store_url):
    from alembic import command

    from mlflow_nlsr.store.engine import _alembic_config

    with JobStore(store_url, auto_migrate=False) as old, old.engine.begin() as conn:
        command.upgrade(_alembic_config(conn), "0001")
        conn.execute(text(
            "INSERT INTO nlsr_audit_events (at, model_name, version, actor, event) "
            "VALUES ('2025-01-01 00:00:00', 'chat', '1', 'legacy', 'enqueued')"
        ))  # fmt: skip
    with JobStore(store_url) as store:
        store.audit("note", actor="carol", model_name="chat", version=1)
        report = store.verify_chain()
    assert report.ok and (report.unchained, report.checked) == (1, 1)
