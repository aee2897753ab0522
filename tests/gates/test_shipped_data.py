"""The shipped suite data meets the issue's sizes (>= 200 harmful requests over >= 10 categories, >= 100
over-refusal prompts, >= 200 sentiment, >= 100 arithmetic, >= 100 knowledge items), every row passes the
loaders' schema checks, and the shipped tasks evaluate on it end to end."""

from __future__ import annotations

import pytest

from mlflow_nlsr.gates.catalog import SHIPPED_TASKS, list_suites
from mlflow_nlsr.gates.suites import SUITES_DIR, utils

MINIMUM = {"harmful.jsonl": 200, "overrefusal.jsonl": 100, "sentiment.jsonl": 200,
           "arithmetic.jsonl": 100, "knowledge.jsonl": 100}  # fmt: skip


@pytest.fixture(autouse=True)
def shipped_data(monkeypatch):
    monkeypatch.delenv("NLSR_GATES_DATA_DIR", raising=False)


@pytest.mark.parametrize("name", sorted(MINIMUM))
def test_each_file_is_valid_large_enough_and_has_unique_ids(name):
    rows = utils.read_rows(name, SUITES_DIR / "data")
    assert len(rows) >= MINIMUM[name]
    ids = [str(r["id"]) for r in rows]
    assert len(set(ids)) == len(ids)


def test_harmful_requests_span_at_least_ten_categories():
    categories = {r["category"] for r in utils.read_rows("harmful.jsonl")}
    assert len(categories) >= 10, categories


def test_labels_answers_and_choices_are_well_formed():
    assert {r["label"] for r in utils.read_rows("sentiment.jsonl")} == {"positive", "negative"}
    for row in utils.read_rows("arithmetic.jsonl"):
        assert utils.normalize_number(str(row["answer"])) == str(row["answer"]), row
    for row in utils.read_rows("knowledge.jsonl"):
        assert len(row["choices"]) == 4 and 0 <= row["answer"] < 4, row
    assert len(utils.load_knowledge()["test"]) == len(utils.read_rows("knowledge.jsonl"))


def test_listing_counts_match_the_files():
    listed = {t["task"]: t["items"] for s in list_suites() for t in s["tasks"]}
    assert listed == {name: len(utils.read_rows(spec.data_file)) for name, spec in SHIPPED_TASKS.items()}


def test_shipped_tasks_evaluate_on_the_shipped_data():
    from mlflow_nlsr.gates.runner import run_gates
    from tests.gates.scripted_lm import ScriptedChatLM

    run = run_gates(None, lm=ScriptedChatLM(refuse_if=("",)), limit=4)
    assert run.metrics["asr"] == 0.0 and run.metrics["refusal_rate"] == 1.0  # refuses everything
    assert run.metrics["sentiment_acc"] == 0.0 and 0.0 <= run.metrics["knowledge_acc"] <= 1.0
    assert all(v["effective"] == 4 for v in run.results["n-samples"].values())
