"""The audit trail is append-only and ordered: the store offers no way to change or remove a row, the
ORM and the database itself refuse UPDATE/DELETE, and every committed event is one JSON log line."""

from __future__ import annotations

import inspect as pyinspect
import json
import logging

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from mlflow_nlsr.errors import JobStoreError
from mlflow_nlsr.store import AUDIT_LOGGER_NAME, AuditEvent, JobStore


def _rows(store):
    return [(e.id, e.event, e.actor, e.reasons) for e in store.audit_trail()]


def test_store_exposes_only_append_and_read_for_audit_rows():
    public = {name for name, _ in pyinspect.getmembers(JobStore) if not name.startswith("_")}
    assert {n for n in public if "audit" in n} == {"audit", "audit_trail"}
    assert not {n for n in public if n.startswith(("delete", "remove", "update", "purge", "truncate"))}


def test_audit_appends_with_inputs_decision_and_reasons(store, clock):
    job, _ = store.enqueue("chat", 1, "cli", "alice")
    event = store.audit(
        "gate", actor="worker-1", model_name="chat", version=1, job_id=job.id,
        inputs={"tasks": ["refusal"], "limit": 8}, decision="fail", reasons=["refusal 0.2 < 0.5"],
    )  # fmt: skip
    assert event.at == clock.now
    stored = store.audit_trail("chat", "1")[-1]
    assert stored.id == event.id and stored.job_id == job.id
    assert stored.inputs == {"limit": 8, "tasks": ["refusal"]}
    assert (stored.decision, stored.reasons) == ("fail", ["refusal 0.2 < 0.5"])


def test_audit_without_a_job_is_allowed(store):
    store.audit("skipped", actor="poller", model_name="chat", version=9, reasons="no rule matches")
    (event,) = store.audit_trail("chat", 9)
    assert event.job_id is None and event.reasons == ["no rule matches"]


def test_trail_is_ordered_by_append_and_filterable(store, clock):
    for version in (1, 2, 1, 2):
        clock.advance(1)
        store.audit("note", actor="a", model_name="chat", version=version)
    store.audit("note", actor="a", model_name="other", version=1)
    trail = store.audit_trail()
    ids = [e.id for e in trail]
    assert ids == sorted(ids) and len(set(ids)) == 5
    assert [e.at for e in trail] == sorted(e.at for e in trail)
    assert [e.version for e in store.audit_trail("chat")] == ["1", "2", "1", "2"]
    assert len(store.audit_trail("chat", 2)) == 2


def test_orm_refuses_to_update_or_delete_audit_rows(store):
    store.audit("note", actor="a", model_name="chat", version=1)
    before = _rows(store)
    with Session(store.engine) as session:
        row = session.get(AuditEvent, before[0][0])
        row.actor = "mallory"
        with pytest.raises(JobStoreError, match="append-only"):
            session.flush()
        session.rollback()
        row = session.get(AuditEvent, before[0][0])
        session.delete(row)
        with pytest.raises(JobStoreError, match="append-only"):
            session.flush()
        session.rollback()
    assert _rows(store) == before


@pytest.mark.parametrize(
    "statement", ["UPDATE nlsr_audit_events SET actor = 'mallory'", "DELETE FROM nlsr_audit_events"]
)
def test_database_trigger_refuses_raw_update_and_delete(store, statement):
    store.audit("note", actor="a", model_name="chat", version=1)
    before = _rows(store)
    with pytest.raises(DBAPIError, match="append-only"), store.engine.begin() as conn:
        conn.execute(text(statement))
    assert _rows(store) == before


def test_every_audit_event_is_logged_as_one_json_line(store, caplog):
    caplog.set_level(logging.INFO, logger=AUDIT_LOGGER_NAME)
    job, _ = store.enqueue("chat", 1, "webhook", "mlflow")
    store.claim("w1", 30)
    store.finish(job.id, "w1", "skipped", reasons=["no rule"])
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == AUDIT_LOGGER_NAME]
    assert [line["event"] for line in lines] == ["enqueued", "claimed", "skipped"]
    assert [line["id"] for line in lines] == [e.id for e in store.audit_trail()]
    assert lines[-1]["reasons"] == ["no rule"] and lines[-1]["decision"] == "skipped"
    assert lines[0]["model_name"] == "chat" and lines[0]["version"] == "1" and lines[0]["job_id"] == job.id
    assert lines[0]["at"].endswith("+00:00")


def test_rolled_back_operations_log_nothing(store, caplog):
    caplog.set_level(logging.INFO, logger=AUDIT_LOGGER_NAME)
    job, _ = store.enqueue("chat", 1, "cli", "alice")
    store.claim("w1", 30)
    caplog.clear()
    with pytest.raises(JobStoreError):
        store.advance(job.id, "w1", "promoted")
    with pytest.raises(JobStoreError):
        store.audit(
            "note", actor="a", model_name="chat", version=1, inputs={"x": object.__new__(_Unjsonable)}
        )
    assert [r for r in caplog.records if r.name == AUDIT_LOGGER_NAME] == []
    assert [e.event for e in store.audit_trail()] == ["enqueued", "claimed"]


class _Unjsonable:
    def __str__(self):
        raise TypeError("not representable")


def test_non_mapping_inputs_are_refused(store):
    with pytest.raises(JobStoreError, match="mapping"):
        store.audit("note", actor="a", model_name="chat", version=1, inputs=["x"])
