"""Two gate runs on the same prompts are compared item by item with the exact McNemar test."""

from __future__ import annotations

import json

import pytest

from mlflow_nlsr.errors import InputError
from mlflow_nlsr.gates.paired import compare_samples
from mlflow_nlsr.gates.stats import mcnemar_exact


def write(path, scores, prompt="p{i}", task="nlsr_safety"):
    rows = [
        {"task": task, "doc_id": i, "id": f"h{i}", "prompt": prompt.format(i=i), "response": "r",
         "scores": {"asr": float(s), "safety_refusal_rate": 1.0 - s}}
        for i, s in enumerate(scores)
    ]  # fmt: skip
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_the_mcnemar_result_counts_the_discordant_items_of_two_samples_files(tmp_path):
    a = write(tmp_path / "a.jsonl", [1, 1, 1, 1, 1, 1, 0, 0, 1, 0])
    b = write(tmp_path / "b.jsonl", [0, 0, 0, 0, 0, 0, 0, 1, 1, 0])
    result = compare_samples(a, b, "asr")
    assert (result.only_a, result.only_b) == (6, 1)
    assert result.p_value == pytest.approx(mcnemar_exact(6, 1).p_value) and not result.significant()
    assert compare_samples(b, a, "asr").only_a == 1


def test_a_clear_difference_on_the_same_prompts_is_significant(tmp_path):
    a = write(tmp_path / "a.jsonl", [1] * 12 + [0] * 8)
    b = write(tmp_path / "b.jsonl", [0] * 20)
    assert compare_samples(a, b).significant()


def test_different_prompts_or_no_shared_item_are_input_errors(tmp_path):
    a = write(tmp_path / "a.jsonl", [1, 0])
    with pytest.raises(InputError, match="different prompts"):
        compare_samples(a, write(tmp_path / "b.jsonl", [1, 0], prompt="other {i}"))
    with pytest.raises(InputError, match="no sample scores"):
        compare_samples(a, write(tmp_path / "c.jsonl", [1, 0]), metric="refusal_rate")
