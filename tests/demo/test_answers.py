"""The demo report shows two models' answers to the same gate prompts side by side, with intervals."""

from __future__ import annotations

import json

from mlflow_nlsr.demo import answers
from mlflow_nlsr.demo.report import answers_section, format_table, model_entry, with_interval

TEMPLATE = "<|im_start|>system\nBe nice.<|im_end|>\n<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n"


def _rows(task, n, answer, categories=("a", "b", "c")):
    return [
        {"task": task, "doc_id": i, "category": categories[i % len(categories)],
         "prompt": TEMPLATE.format(f"{task} question {i}?"), "response": answer.format(i)}
        for i in range(n)
    ]  # fmt: skip


def _write(gate_dir, rows):
    gate_dir.mkdir(parents=True)
    (gate_dir / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return gate_dir


def _samples(answer):
    return (_rows("nlsr_overrefusal", 12, answer) + _rows("nlsr_safety", 14, answer)
            + _rows("nlsr_sentiment", 30, "positive"))  # fmt: skip


def test_ten_benign_and_ten_harmful_prompts_are_shown_with_both_answers(tmp_path):
    left = _write(tmp_path / "ft", _samples("Sure, step {}: do it | now"))
    right = _write(tmp_path / "re", _samples("I can't help with that ({})."))
    summary = {"finetuned": {"gate_dir": str(left)}, "realigned": {"gate_dir": str(right)}}
    text = answers_section(summary)
    tables = [block for block in text.split("### ")[1:]]
    assert len(tables) == 2 and tables[0].startswith("Benign") and tables[1].startswith("Harmful")
    for block in tables:
        body = [line for line in block.splitlines() if line.startswith("| ") and "prompt |" not in line]
        assert len(body) == answers.PER_TABLE
        assert all("I can't help with that" in line and "Sure, step" in line for line in body)
    assert "nlsr_safety question 0? |" in text  # the user's turn, not the chat template
    assert "<|im_start|>" not in text and "do it \\| now" in text  # pipes escaped, table intact


def test_the_picked_prompts_cover_every_category_before_repeating_one(tmp_path):
    rows = _rows("nlsr_overrefusal", 9, "answer {}", categories=tuple("xxxyzzzzz"))
    picked = answers.paired(rows, rows, "nlsr_overrefusal", 3)
    expected = [TEMPLATE.format(f"nlsr_overrefusal question {i}?") for i in (0, 3, 4)]
    assert [p for p, _, _ in picked] == expected


def test_missing_samples_say_so_instead_of_an_empty_table(tmp_path):
    text = answers_section({"finetuned": {"gate_dir": None}, "realigned": {"gate_dir": str(tmp_path)}})
    assert text.count("no nlsr_") == 2


def test_long_answers_are_cut_and_flattened_to_one_table_cell():
    cell = answers._cell("word\n" * 200)
    assert "\n" not in cell and len(cell) <= answers.MAX_CHARS and cell.endswith("…")


def test_every_rate_in_the_table_carries_its_wilson_interval(tmp_path):
    gate = _write(tmp_path / "g", _samples("x"))
    entry = model_entry({"asr": 0.1, "refusal_rate": 0.0, "sentiment_acc": 0.9}, tmp_path, gate)
    assert entry["n"] == {"asr": 14, "refusal_rate": 12, "utility": 30}
    summary = {role: entry for role in ("base", "aligned", "finetuned", "realigned", "official",
                                        "safelora", "random_control")}  # fmt: skip
    row = format_table(summary).splitlines()[2]
    assert row.startswith(f"| base | {with_interval(0.1, 14)} | 0.0 [0.0, 24.2] | ")
    assert with_interval(0.1, 50) == "10.0 [4.3, 21.4]"
    assert with_interval(0.5, None) == "50.0"  # no item count, no interval invented
