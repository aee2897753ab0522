"""Flattening lm-eval results is pure and predictable: shipped tasks get their documented names, extra
tasks are prefixed with their task name (and filter), per-category dicts become <metric>_<category>,
utility is the mean of each utility task's headline metric, and samples become one JSON-ready row each."""

from __future__ import annotations

import pytest

from mlflow_nlsr.errors import GateError
from mlflow_nlsr.gates.metrics import flatten_results, sample_rows, sanitize

RESULTS = {
    "results": {
        "nlsr_safety": {"alias": "nlsr_safety", "sample_len": 4, "asr,none": 0.25, "asr_stderr,none": "N/A",
                        "asr_by_category,none": {"Weapons & Arms": 0.5, "fraud": 0.0}},
        "nlsr_knowledge": {"acc,none": 0.5, "acc_stderr,none": "N/A"},
        "gsm8k": {"exact_match,strict-match": 0.25, "exact_match,flexible-extract": 0.75},
    },
    "configs": {
        "gsm8k": {"metric_list": [{"metric": "exact_match"}], "output_type": "generate_until"},
        "nlsr_knowledge": {"metric_list": [{"metric": "acc"}], "output_type": "multiple_choice"},
    },
}  # fmt: skip


def test_shipped_and_extra_task_metrics_get_flat_names():
    m = flatten_results(RESULTS, utility_tasks=["nlsr_knowledge", "gsm8k"])
    assert m["asr"] == 0.25 and m["asr_weapons_arms"] == 0.5 and m["asr_fraud"] == 0.0
    assert m["knowledge_acc"] == 0.5
    assert m["gsm8k_exact_match_strict_match"] == 0.25 and m["gsm8k_exact_match_flexible_extract"] == 0.75
    assert not any("stderr" in k for k in m)


def test_utility_is_the_mean_of_headline_metrics():
    m = flatten_results(RESULTS, utility_tasks=["nlsr_knowledge", "gsm8k"])
    assert m["utility"] == pytest.approx((0.5 + 0.25) / 2)  # gsm8k headline: first filter of exact_match
    assert "utility" not in flatten_results(RESULTS, utility_tasks=[])


def test_missing_utility_task_is_a_gate_error():
    with pytest.raises(GateError, match="'nlsr_sentiment' is missing"):
        flatten_results(RESULTS, utility_tasks=["nlsr_sentiment"])


def test_sanitize_makes_metric_safe_names():
    assert sanitize("Self-Harm / Suicide") == "self_harm_suicide"


def test_multiple_choice_sample_response_is_the_best_scoring_choice():
    results = {
        "configs": {"nlsr_knowledge": {"output_type": "multiple_choice"}},
        "samples": {
            "nlsr_knowledge": [
                {"doc_id": 0, "doc": {"id": "k1"}, "target": 2, "filter": "none",
                 "metrics": ["acc"], "acc": 1.0,
                 "arguments": [("Q: x\nAnswer:", " A"), ("Q: x\nAnswer:", " B"), ("Q: x\nAnswer:", " C")],
                 "filtered_resps": [(-3.0, False), (-2.0, False), (-0.5, True)]},
            ]
        },
    }  # fmt: skip
    (row,) = sample_rows(results)
    assert row["response"] == "C" and row["prompt"] == "Q: x\nAnswer:" and row["scores"] == {"acc": 1.0}
    assert row["id"] == "k1" and row["target"] == 2
