"""Governance against a real `mlflow server`: an alias never moves backwards (two racing jobs), alias
history and rollback, manual approval and rejection with the acting user, a verifiable audit chain and
export, and `verify` recomputing a promoted version's hashes."""

from __future__ import annotations

import csv
import io
import json
import threading

import pytest
import yaml
from click.testing import CliRunner

from mlflow_nlsr.cli import cli
from mlflow_nlsr.registry.models import log_local_model
from mlflow_nlsr.rules import Rule
from mlflow_nlsr.service import promotion
from tests.service.conftest import PERMISSIVE, write_config

pytestmark = pytest.mark.slow


def _register(client, models, name, **tags) -> str:
    _, version = log_local_model(
        models[2], name=name, registered_model_name=name, version_tags=tags, client=client
    )
    return version.version


def _repair(client, models, name, source_version) -> str:
    """A version that looks like NLSR's repair of `name` version `source_version`."""
    tags = {"nlsr.realigned": "true", "nlsr.source_model": name, "nlsr.source_version": source_version}
    return _register(client, models, name, **tags)


def _cli(svc, *args, env=None):
    common = ["--tracking-uri", svc.settings.tracking_uri, "--work-dir", str(svc.settings.work_dir),
              "--store", svc.store.url]  # fmt: skip
    if svc.settings.config is not None:
        common += ["--config", str(svc.settings.config)]
    return CliRunner().invoke(cli, [*args, *common], env=env, catch_exceptions=False)


def test_two_racing_jobs_leave_the_alias_on_the_repair_of_the_newest_source_version(
    server, models, make_service, model_name
):
    svc = make_service(None)
    client = svc.client
    sources = [_register(client, models, model_name) for _ in range(2)]
    repairs = {src: _repair(client, models, model_name, src) for src in sources}
    jobs = {src: svc.store.enqueue(model_name, src, "cli", "test")[0] for src in sources}
    passed = {"verdict": {"passed": True}, "reasons": []}
    for _round in range(3):
        if client.find_alias_version(model_name, "safe") is not None:
            client.delete_alias(model_name, "safe")
        barrier, decisions = threading.Barrier(2), {}

        def finish(src, barrier=barrier, decisions=decisions):
            barrier.wait()
            decisions[src] = promotion.conclude(
                svc, jobs[src], Rule(match=model_name), model_name, repairs[src], passed
            )

        threads = [threading.Thread(target=finish, args=(src,)) for src in reversed(sources)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert client.find_alias_version(model_name, "safe").version == repairs[sources[1]]
        assert decisions[sources[1]].state.value == "promoted"
        older = decisions[sources[0]]
        assert older.state.value == "promoted" or "never moves an alias backwards" in older.reasons[0]
    moves = svc.store.alias_history(model_name, "safe")
    for before, after in zip(
        moves, moves[1:], strict=False
    ):  # serialised: each move starts where the last ended
        assert after.from_version in (before.to_version, None)


def test_rollback_restores_the_previously_promoted_version_or_the_one_named(
    server, models, make_service, model_name
):
    svc = make_service(None)
    client = svc.client
    first, second = (_repair(client, models, model_name, str(i)) for i in (1, 2))
    for version in (first, second):
        promotion.move_alias(svc, model_name, "safe", version, action="promote", actor="w")

    result = _cli(svc, "rollback", model_name, "--json", env={"MLFLOW_TRACKING_USERNAME": "ops-lead"})

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"model": model_name, "alias": "safe", "from_version": second,
                                         "to_version": first, "actor": "ops-lead"}  # fmt: skip
    assert client.find_alias_version(model_name, "safe").version == first
    last = svc.store.alias_history(model_name, "safe")[-1]
    assert (last.action, last.actor, last.from_version, last.to_version) == (
        "rollback",
        "ops-lead",
        second,
        first,
    )
    again = _cli(svc, "rollback", model_name)
    assert again.exit_code == 9 and "no earlier promoted version" in again.output
    to = _cli(svc, "rollback", model_name, "--to", second)
    assert to.exit_code == 0 and client.find_alias_version(model_name, "safe").version == second


def test_manual_promotion_waits_for_a_person_who_approves_or_rejects(
    server, models, references, model_name, make_service, tmp_path, notify_receiver
):
    config = write_config(tmp_path / "nlsr.yaml", model_name, *references, PERMISSIVE, promotion="manual")
    hook, deliveries, _ = notify_receiver
    config.write_text(config.read_text() + yaml.safe_dump({"notify": [{"url": hook}]}))
    svc = make_service(config, calibrate=False)
    client = svc.client
    v1, v2 = _register(client, models, model_name), _register(client, models, model_name)

    parked = svc.process_version(model_name, v1)

    assert parked.state == "awaiting-approval"
    assert client.find_alias_version(model_name, "safe") is None
    assert client.find_alias_version(model_name, "safe-candidate").version == parked.realigned_version
    assert client.get_version(model_name, v1).tags["nlsr.status"] == "awaiting-approval"
    card = client.get_version(model_name, parked.realigned_version).description
    assert card.startswith("---\nlibrary_name: peft\nbase_model: " + references[0])
    sections = ("## Model Details", "### Lineage", "### Out-of-Scope Use", "## Bias, Risks, and Limitations",
                "## Evaluation", "## How to verify", "Judge: `keyword`")  # fmt: skip
    for section in sections:
        assert section in card, section
    asr_row = next(line for line in card.splitlines() if line.startswith("| asr |"))
    assert asr_row.startswith("| asr | 2 | ") and "[" in asr_row  # 2 items per task, a 95 % interval
    assert svc.process_version(model_name, v1).state == "awaiting-approval"  # a rerun changes nothing

    alice = {"MLFLOW_TRACKING_USERNAME": "alice"}
    approved = _cli(svc, "approve", model_name, v1, "--comment", "eval reviewed", "--json", env=alice)

    assert approved.exit_code == 0, approved.output
    assert json.loads(approved.stdout)["state"] == "promoted"
    assert client.find_alias_version(model_name, "safe").version == parked.realigned_version
    assert client.find_alias_version(model_name, "safe-candidate") is None
    assert client.get_version(model_name, v1).tags["nlsr.approved_by"] == "alice"
    row = [e for e in svc.store.audit_trail(model_name, v1) if e.event == "approved"][0]
    assert (row.actor, row.approved_by) == ("alice", "alice") and "eval reviewed" in row.reasons[0]
    twice = _cli(svc, "approve", model_name, v1, env=alice)
    assert twice.exit_code == 9 and "not awaiting approval" in twice.output
    posing = _cli(svc, "approve", model_name, v1, "--as", "mallory", env=alice)
    assert posing.exit_code == 9 and "refused" in posing.output

    second = svc.process_version(model_name, v2)
    rejected = _cli(svc, "reject", model_name, v2, "--reason", "judge disagrees", "--as", "bob")

    assert second.state == "awaiting-approval" and rejected.exit_code == 0, rejected.output
    assert svc.store.get(model_name, v2).state.value == "rejected"
    assert client.get_version(model_name, v2).tags["nlsr.reasons"] == "judge disagrees"
    assert client.find_alias_version(model_name, "safe").version == parked.realigned_version
    assert client.find_alias_version(model_name, "safe-candidate") is None

    told = [json.loads(body) for _, body in deliveries]
    assert [(d["event"], d["actor"]) for d in told] == [
        ("awaiting-approval", None), ("promoted", "alice"), ("awaiting-approval", None), ("rejected", "bob"),
    ]  # fmt: skip
    assert told[-1]["text"].endswith("judge disagrees")
    chain = _cli(svc, "audit", "--verify")
    assert chain.exit_code == 0 and "audit chain OK" in chain.output
    lines = [
        json.loads(x)
        for x in _cli(svc, "audit", "--format", "jsonl", "--model", model_name).stdout.splitlines()
    ]
    assert {(x["event"], x["approved_by"]) for x in lines} >= {("approved", "alice"), ("rejected", "bob")}
    assert all(x["row_hash"] and x["host"] for x in lines)
    table = list(csv.DictReader(io.StringIO(_cli(svc, "audit", "--format", "csv").stdout)))
    assert len(table) >= len(lines) and "prev_hash" in table[0]

    verified = _cli(svc, "verify", f"models:/{model_name}/{parked.realigned_version}", "--rerun", "--json")
    report = json.loads(verified.stdout)
    assert verified.exit_code == 0 and report["ok"], verified.output
    assert {c["check"] for c in report["checks"]} >= {"output_sha256 (tag)", "input base sha256",
                                                     "rerun output bytes (sha256)"}  # fmt: skip
    client.set_version_tags(model_name, second.realigned_version, {"nlsr.output_sha256": "0" * 64})
    tampered = _cli(svc, "verify", f"models:/{model_name}/{second.realigned_version}")
    assert tampered.exit_code == 10
    failed = [c for c in json.loads(tampered.stdout)["checks"] if not c["ok"]]
    assert [c["check"] for c in failed] == ["output_sha256 (tag)"]


def test_automatic_promotion_keeps_the_alias_when_an_older_version_finishes_last(
    server, models, references, model_name, make_service, tmp_path
):
    config = write_config(tmp_path / "nlsr.yaml", model_name, *references, PERMISSIVE)
    svc = make_service(config, calibrate=False)
    client = svc.client
    older, newer = _register(client, models, model_name), _register(client, models, model_name)

    first = svc.process_version(model_name, newer)
    late = svc.process_version(model_name, older)

    assert first.state == "promoted" and late.state == "registered"
    assert "never moves an alias backwards" in late.reasons[0]
    assert client.find_alias_version(model_name, "safe").version == first.realigned_version
    assert client.get_version(model_name, older).tags["nlsr.status"] == "registered"


def test_the_poller_ignores_history_on_first_start_then_follows_each_models_watermark(
    server, models, make_service, model_name
):
    svc = make_service(None)
    history = _register(svc.client, models, model_name)

    assert svc.poll_once(name_glob=model_name) == []  # --since now: the version before the start waits
    fresh = _register(svc.client, models, model_name)
    queued = svc.poll_once(name_glob=model_name)

    assert [j.version for j in queued] == [fresh]
    assert svc.store.watermark(model_name) == svc.client.get_version(model_name, fresh).created_ms
    assert svc.store.get(model_name, history) is None


def test_a_skipped_version_is_requeued_and_a_queued_one_cancelled_by_a_named_person(
    server, models, make_service, model_name
):
    svc = make_service(None)
    version = _register(svc.client, models, model_name)
    assert svc.process_version(model_name, version).state == "skipped"  # no rule, no reference tags
    ops = {"MLFLOW_TRACKING_USERNAME": "ops"}

    requeued = _cli(svc, "requeue", "--skipped", model_name, "--json", env=ops)

    assert requeued.exit_code == 0, requeued.output
    assert [o["state"] for o in json.loads(requeued.stdout)] == ["queued"]
    assert svc.client.get_version(model_name, version).tags["nlsr.status"] == "queued"
    cancelled = _cli(svc, "cancel", model_name, version, "--reason", "base not published yet", env=ops)
    assert cancelled.exit_code == 0 and svc.store.get(model_name, version).state.value == "cancelled"
    assert _cli(svc, "cancel", model_name, version).exit_code == 7  # already cancelled
    trail = [(e.event, e.actor) for e in svc.store.audit_trail(model_name, version)]
    assert ("requeued", "ops") in trail and ("cancelled", "ops") in trail
    assert _cli(svc, "requeue", model_name, version, env=ops).exit_code == 0
