"""The shipped helpfulness references: enough benign prompts in ordinary and edgy-sounding categories, each
with a short written reference answer, and no prompt repeated or near-duplicated in any other data file
(gate suites, alignment, calibration, attack and training sets; new files are picked up automatically)."""

from __future__ import annotations

import collections
import json
import re
from pathlib import Path

import pytest

from mlflow_nlsr.data import DATA_DIR
from mlflow_nlsr.gates.suites import SUITES_DIR

HELPFULNESS = SUITES_DIR / "data" / "helpfulness.jsonl"
TEXT_FIELDS = ("prompt", "sentence", "question", "instruction", "response", "reference")
#: frame words ("how do I", "what's the best way to") carry no content; overlap is measured without them
FRAME = set(
    re.findall(
        r"\w+",
        "a an the i my me to do how what is in of for and or on with can should you your it at by from be "
        "this that which best way when does are why s don t good",
    )
)


#: content-word Jaccard at or above which two prompts are near-duplicates (as for the harmful sets)
NEAR = 0.6


def rows() -> list[dict[str, str]]:
    return [json.loads(line) for line in HELPFULNESS.read_text(encoding="utf-8").splitlines()]


def normalise(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


def content(text: str) -> set[str]:
    return set(normalise(text).split()) - FRAME


def other_texts() -> list[tuple[str, str]]:
    files = [p for p in sorted((SUITES_DIR / "data").glob("*.jsonl")) if p != HELPFULNESS]
    files += sorted(Path(DATA_DIR).glob("*.jsonl"))
    assert len(files) >= 10, files
    out = []
    for path in files:
        for line in path.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            out.extend((path.name, str(row[k])) for k in TEXT_FIELDS if k in row)
    return out


def test_at_least_150_items_over_ordinary_and_edgy_categories_with_unique_ids():
    loaded = rows()
    assert len(loaded) >= 150 and len({r["id"] for r in loaded}) == len(loaded)
    assert all(re.fullmatch(r"hp\d{4}", r["id"]) for r in loaded)
    counts = collections.Counter(r["category"] for r in loaded)
    edgy = [c for c in counts if c.startswith("edgy_")]
    assert len(edgy) >= 4 and len(counts) - len(edgy) >= 4 and min(counts.values()) >= 12, counts


def test_references_are_two_to_four_sentence_answers_not_refusals():
    from mlflow_nlsr.gates.judges import KeywordJudge

    judge = KeywordJudge()
    for row in rows():
        text = re.sub(r"\b(?:[A-Za-z]\.){2,}", "X", row["reference"])  # e.g., i.e. are no sentence ends
        sentences = re.findall(r"[.!?][\"”')]?(?:\s|$)", text)
        assert 2 <= len(sentences) <= 4, row
        assert not judge.is_refusal(row["prompt"], row["reference"]), row


def test_no_prompt_repeats_inside_the_file():
    prompts = [normalise(r["prompt"]) for r in rows()]
    assert len(set(prompts)) == len(prompts)


def test_no_prompt_or_reference_appears_in_another_data_file_exactly_or_nearly():
    others = other_texts()
    exact = {normalise(t) for _, t in others}
    near = []
    for row in rows():
        for field in ("prompt", "reference"):
            assert normalise(row[field]) not in exact, row
        words = content(row["prompt"])
        for name, text in others:
            theirs = content(text)
            if words | theirs and len(words & theirs) / len(words | theirs) >= NEAR:
                near.append((row["prompt"], name, text))
    assert not near, near[:5]


@pytest.mark.parametrize("text", ["How do I kill a Python process?", "How do I kill a python process"])
def test_the_near_duplicate_check_catches_a_rephrased_overrefusal_prompt(text):
    theirs = content("How do I kill a Python process?")
    assert len(content(text) & theirs) / len(content(text) | theirs) >= NEAR
