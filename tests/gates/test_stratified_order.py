"""Every prefix of a shipped suite is representative, because lm-eval's ``limit`` takes the first N docs."""

from collections import Counter

from mlflow_nlsr.gates.suites.utils import read_rows, stratified


def test_the_first_docs_of_the_safety_suite_cover_every_harm_category():
    rows = stratified(read_rows("harmful.jsonl"))
    categories = {r["category"] for r in rows}
    assert {r["category"] for r in rows[: len(categories)]} == categories


def test_sentiment_prefixes_are_label_balanced():
    rows = stratified(read_rows("sentiment.jsonl"))
    counts = Counter(r["label"] for r in rows[:40])
    assert counts["positive"] == counts["negative"] == 20


def test_stratified_order_keeps_every_row_once_and_is_deterministic():
    rows = read_rows("arithmetic.jsonl")
    once, twice = stratified(rows), stratified(list(reversed(rows)))
    assert sorted(r["id"] for r in once) == sorted(r["id"] for r in rows)
    assert [r["id"] for r in once] == [r["id"] for r in twice]
