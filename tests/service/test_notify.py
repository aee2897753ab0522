"""Notifications reach a receiver on loopback as signed JSON with a Slack-compatible `text`, are retried
with backoff, and a target that stays down is audited without failing anything."""

from __future__ import annotations

import json
import socket

import pytest

from mlflow_nlsr.registry.webhook import sign
from mlflow_nlsr.rules import NotifyTarget, Rules
from mlflow_nlsr.service.notify import Delivery, notify_job
from mlflow_nlsr.store import JobState, JobStore

FAST = Delivery(attempts=3, backoff_s=0.01, timeout_s=5)


@pytest.fixture
def promoted_job(tmp_path):
    store = JobStore(f"sqlite:///{tmp_path / 'jobs.db'}")
    job, _ = store.enqueue("chat", 3, "cli", "alice", registered_by="alice")
    store.claim("w1", 60)
    for state in ("realigned", "gated"):
        store.advance(job.id, "w1", state)
    done = store.finish(job.id, "w1", JobState.PROMOTED, realigned_version="4",
                        result={"reasons": ["PASS: asr = 0.0 <= 0.1"]})  # fmt: skip
    return store, done


def test_a_promotion_is_posted_signed_like_mlflow_and_retried_after_a_server_error(
    notify_receiver, promoted_job, monkeypatch
):
    url, seen, state = notify_receiver
    state["fail_first"] = 1
    monkeypatch.setenv("NLSR_TEST_NOTIFY_SECRET", "s3cret")
    store, job = promoted_job

    sent = notify_job(store, [NotifyTarget(url, secret_env="NLSR_TEST_NOTIFY_SECRET")], job, delivery=FAST)

    assert sent == 1 and len(seen) == 2
    (first, _), (headers, body) = seen
    assert first["x-mlflow-delivery-id"] == headers["x-mlflow-delivery-id"]
    expected = sign("s3cret", headers["x-mlflow-delivery-id"], headers["x-mlflow-timestamp"], body)
    assert headers["x-mlflow-signature"] == expected
    data = json.loads(body)
    assert data["event"] == "promoted" and data["realigned_version"] == "4"
    assert data["text"] == "NLSR: chat v3 is promoted (realigned version 4): PASS: asr = 0.0 <= 0.1"
    assert data["registered_by"] == "alice"


def test_a_target_that_stays_down_is_audited_and_nothing_raises(promoted_job):
    store, job = promoted_job
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/hook"

    assert notify_job(store, [NotifyTarget(dead)], job, delivery=FAST) == 0

    row = store.audit_trail("chat", 3)[-1]
    assert row.event == "notify-failed" and row.inputs == {"url": dead, "event": "promoted"}
    assert "after 3 attempt(s)" in row.reasons[0]


def test_only_subscribed_events_are_sent(notify_receiver, promoted_job):
    url, seen, _ = notify_receiver
    store, job = promoted_job
    assert notify_job(store, [NotifyTarget(url, events=("failed",))], job, delivery=FAST) == 0
    assert seen == []


def test_notify_targets_are_read_and_checked_from_nlsr_yaml():
    rules = Rules.from_mapping({"notify": [{"url": "https://hooks.example/x", "events": ["rejected"],
                                            "secret_env": "K"}]})  # fmt: skip
    assert rules.notify == (NotifyTarget("https://hooks.example/x", ("rejected",), "K"),)
    with pytest.raises(Exception, match="unknown event"):
        Rules.from_mapping({"notify": [{"url": "https://x", "events": ["deleted"]}]})
