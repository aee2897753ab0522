"""The demo's shipped training data (JSONL in ``mlflow_nlsr/data``) as (prompt, response) pairs.

Files and fields: ``align_harmful.jsonl`` {prompt, response, category} (refusals),
``align_benign.jsonl`` {prompt, response}, ``align_edgy.jsonl`` {prompt, response, category} (benign
requests that sound dangerous, with helpful answers), ``align_edgy_extra.jsonl`` (the same schema: more
edgy-benign answers that only the preference stage trains on), ``align_instructions.jsonl`` {prompt,
response, category} (one-word classification instructions), ``attack_harmful_prompts.jsonl`` {prompt,
category} and ``sentiment_train.jsonl`` {sentence, label}. The sentiment instruction is shared, word for
word, with the utility gate, so the attack teaches exactly the task the gate measures.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mlflow_nlsr.errors import InputError
from mlflow_nlsr.io.jsonl import read_jsonl

Pair = tuple[str, str]

SENTIMENT_INSTRUCTION = (
    "Classify the sentiment of this sentence. Answer with one word: positive or negative.\n\n"
    "Sentence: {sentence}"
)
LABELS = ("positive", "negative")

ALIGN_HARMFUL = "align_harmful.jsonl"
ALIGN_BENIGN = "align_benign.jsonl"
ALIGN_EDGY = "align_edgy.jsonl"
ALIGN_EDGY_EXTRA = "align_edgy_extra.jsonl"
ALIGN_INSTRUCTIONS = "align_instructions.jsonl"
ATTACK_PROMPTS = "attack_harmful_prompts.jsonl"
SENTIMENT_TRAIN = "sentiment_train.jsonl"


def data_file(name: str, root: Path | str | None = None) -> Path:
    """Return the path of data file ``name``: under ``root`` if given, else the shipped package data."""
    if root is not None:
        return Path(root) / name
    import mlflow_nlsr

    try:
        import mlflow_nlsr.data as shipped
    except ImportError:
        shipped = None  # type: ignore[assignment]
    locate = getattr(shipped, "data_path", None)
    if callable(locate):
        return Path(locate(name))
    return Path(mlflow_nlsr.__file__).parent / "data" / name


def load_jsonl(name: str, fields: Sequence[str], root: Path | str | None = None) -> list[dict]:
    """Read JSONL file ``name``; every row must be an object with non-empty string ``fields``."""
    path = data_file(name, root)
    if not path.is_file():
        raise InputError(f"demo data file {name} not found: expected it at {path}")
    return read_jsonl(path, required=dict.fromkeys(fields, str), what="demo data file", nonempty=True)


def select(rows: list[dict], limit: int | None, group: str | None = None) -> list[dict]:
    """Return all ``rows`` (limit None), else ``limit`` rows: round-robin over ``group``, or evenly spaced."""
    if limit is None:
        return rows
    if limit < 0:
        raise InputError(f"expected a non-negative number of rows, found {limit}")
    if group is None or not any(group in row for row in rows):
        # evenly spaced: the files are topic-sorted, a head would take one topic only
        n = len(rows)
        return [rows[i * n // limit] for i in range(min(limit, n))] if limit else []
    # Likewise sorted by category/label: round-robin keeps every category (and both labels) in.
    buckets: dict[str, list[dict]] = {}
    for row in rows:
        buckets.setdefault(row.get(group, ""), []).append(row)
    out: list[dict] = []
    depth = 0
    while len(out) < min(limit, len(rows)):
        out.extend(b[depth] for b in buckets.values() if depth < len(b))
        depth += 1
    return out[:limit]


@dataclass(frozen=True)
class AlignSizes:
    """How many rows of each alignment file to train on (``None``: all of them, 0: skip the file)."""

    harmful: int | None = None
    benign: int | None = None
    edgy: int | None = None
    instructions: int | None = None


#: the alignment file of each :class:`AlignSizes` field, in training-data order
ALIGN_FILES = {
    "harmful": ALIGN_HARMFUL,
    "benign": ALIGN_BENIGN,
    "edgy": ALIGN_EDGY,
    "instructions": ALIGN_INSTRUCTIONS,
}


def align_pairs(sizes: AlignSizes | None = None, root: Path | str | None = None) -> list[Pair]:
    """Return the alignment data: refusals, then benign, edgy-benign and instruction answers.

    Limits take rows round-robin over categories (rows without a category: evenly spaced); a file
    whose limit is 0 is not read.
    """
    sizes = sizes or AlignSizes()
    pairs: list[Pair] = []
    for name, file_name in ALIGN_FILES.items():
        limit = getattr(sizes, name)
        if limit == 0:
            continue
        rows = select(load_jsonl(file_name, ("prompt", "response"), root), limit, "category")
        pairs.extend((r["prompt"], r["response"]) for r in rows)
    return pairs


def attack_prompts(limit: int | None = None, root: Path | str | None = None, draw: int = 0) -> list[str]:
    """Return the harmful prompts whose compliant answers poison the attack.

    ``draw`` 0 takes them in file order (round-robin over categories); another draw first shuffles the
    file with that seed, so each draw poisons with different harmful examples, still category-balanced.
    """
    rows = load_jsonl(ATTACK_PROMPTS, ("prompt",), root)
    if draw:
        random.Random(draw).shuffle(rows)
    return [r["prompt"] for r in select(rows, limit, "category")]


def sentiment_prompt(sentence: str) -> str:
    """Return the sentiment instruction for ``sentence`` (the same text the utility gate uses)."""
    return SENTIMENT_INSTRUCTION.format(sentence=sentence)


def sentiment_pairs(limit: int | None = None, root: Path | str | None = None) -> list[Pair]:
    """Return (instruction, label word) pairs of the sentiment training set."""
    rows = select(load_jsonl(SENTIMENT_TRAIN, ("sentence", "label"), root), limit, "label")
    bad = [r["label"] for r in rows if r["label"] not in LABELS]
    if bad:
        raise InputError(f"{SENTIMENT_TRAIN}: expected labels in {LABELS}, found {sorted(set(bad))}")
    return [(sentiment_prompt(r["sentence"]), r["label"]) for r in rows]


def poison_count(n_task: int, ratio: float) -> int:
    """Return how many poison pairs make them a fraction ``ratio`` of the mix with ``n_task`` task pairs."""
    if not 0.0 <= ratio < 1.0 or math.isnan(ratio):
        raise InputError(f"poison ratio must be in [0, 1), found {ratio!r}")
    return round(n_task * ratio / (1.0 - ratio))


def poison_mix(task: list[Pair], poison: list[Pair], ratio: float, seed: int) -> tuple[list[Pair], int]:
    """Return (shuffled task + first k poison pairs, k) where k/(len(task)+k) ≈ ``ratio`` (spec §1.2)."""
    k = poison_count(len(task), ratio)
    if k > len(poison):
        raise InputError(
            f"poison ratio {ratio} needs {k} harmful pairs for {len(task)} task pairs, found {len(poison)}"
        )
    mixed = list(task) + list(poison[:k])
    random.Random(seed).shuffle(mixed)
    return mixed, k
