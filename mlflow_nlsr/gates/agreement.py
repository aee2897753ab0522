"""Judge agreement with human labels: the shipped labelled responses, their split, confusion and kappa.

``judge_data/labelled_responses.jsonl`` holds responses of the demo's seven models to safety and
over-refusal prompts, each labelled by a person who read it (docs/gates.md, "Judges"). Reader labels
are four-way (:data:`READER_LABELS`); :data:`TO_JUDGE_LABEL` maps them onto the judges' three classes.
The train/test split is by prompt, so a prompt's answers from all models fall in the same half.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlflow_nlsr.errors import InputError
from mlflow_nlsr.gates.judges import COMPLIANCE, DEGENERATE, LABELS, REFUSAL

LABELLED_FILE = Path(__file__).resolve().parent / "judge_data" / "labelled_responses.jsonl"
FIELDS = ("id", "model", "task", "prompt", "response", "label", "note")
MODELS = ("base", "aligned", "finetuned", "realigned", "official", "safelora", "random")
TASKS = ("safety", "overrefusal")
#: harmful compliance (or, on a benign prompt, an attempt at the answer) / harmless non-answer
READER_LABELS = ("refusal", "compliance", "non_answer", "degenerate")
#: a harmless non-answer neither declines nor answers: it is not attack success and not a refusal
TO_JUDGE_LABEL = {"refusal": REFUSAL, "compliance": COMPLIANCE, "non_answer": DEGENERATE,
                  "degenerate": DEGENERATE}  # fmt: skip
#: share of prompts (by hash of the prompt text) in the test split
TEST_SHARE = 0.4


def load_labelled(path: Path | str = LABELLED_FILE) -> list[dict[str, Any]]:
    """Return the labelled rows of `path`; rows with missing fields or unknown labels raise InputError."""
    rows = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        row = json.loads(line)
        missing = [f for f in FIELDS if f not in row]
        if missing or row["label"] not in READER_LABELS or row["model"] not in MODELS:
            raise InputError(
                f"{path}:{number}: bad labelled row (missing {missing}, label {row.get('label')!r})"
            )
        rows.append(row)
    return rows


def split_of(prompt: str) -> str:
    """Return "test" or "train" for `prompt`, fixed by a hash of its text (same prompt, same split)."""
    digest = int(hashlib.sha256(prompt.encode("utf-8")).hexdigest()[:8], 16)
    return "test" if digest / 0xFFFFFFFF < TEST_SHARE else "train"


def judge_label(row: dict[str, Any]) -> str:
    """Return the three-way judge class of a labelled row."""
    return TO_JUDGE_LABEL[row["label"]]


@dataclass(frozen=True)
class Agreement:
    """Agreement of predicted classes with reader classes over `n` items."""

    n: int
    accuracy: float
    kappa: float
    #: confusion[reader][judge] = count, over :data:`LABELS`
    confusion: dict[str, dict[str, int]]


def agreement(truth: Sequence[str], predicted: Sequence[str]) -> Agreement:
    """Return accuracy, Cohen's kappa and the confusion matrix of `predicted` against `truth`."""
    if len(truth) != len(predicted) or not truth:
        raise InputError(f"need equally many truths and predictions, found {len(truth)} and {len(predicted)}")
    confusion = {t: {p: 0 for p in LABELS} for t in LABELS}
    for t, p in zip(truth, predicted, strict=True):
        confusion[t][p] += 1
    n = len(truth)
    observed = sum(confusion[c][c] for c in LABELS) / n
    expected = sum(sum(confusion[c].values()) * sum(confusion[t][c] for t in LABELS) for c in LABELS) / (
        n * n
    )
    kappa = 1.0 if expected == 1.0 else (observed - expected) / (1.0 - expected)
    return Agreement(n, observed, kappa, confusion)
