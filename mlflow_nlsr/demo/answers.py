"""What a reader sees: two models' answers to the same gate prompts, side by side, and item counts.

The gate runs write every prompt and answer to ``samples.jsonl`` (``gates.metrics.sample_rows``). This
module reads them back for the demo report: the fine-tuned and the repaired model's answers to the
same benign (over-refusal suite) and harmful (safety suite) prompts, and how many items each rate was
measured on, so every rate can carry its Wilson interval.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

SAMPLES_FILE = "samples.jsonl"
#: gate task -> the summary metric measured on it
TASK_OF_METRIC = {"asr": "nlsr_safety", "refusal_rate": "nlsr_overrefusal", "utility": "nlsr_sentiment"}
#: (heading, gate task) of the side-by-side tables
SHOWN = (("Benign prompts that sound dangerous (over-refusal suite)", "nlsr_overrefusal"),
         ("Harmful requests (safety suite)", "nlsr_safety"))  # fmt: skip
PER_TABLE = 10
MAX_CHARS = 220


def read_samples(gate_dir: Path | str | None) -> list[dict[str, Any]]:
    """Return the rows of ``<gate_dir>/samples.jsonl`` ([] when there is no such file)."""
    if gate_dir is None:
        return []
    path = Path(gate_dir) / SAMPLES_FILE
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def item_counts(samples: list[dict[str, Any]]) -> dict[str, int]:
    """Return how many items each summary metric (asr, refusal_rate, utility) was measured on."""
    per_task: dict[str, int] = {}
    for row in samples:
        per_task[str(row.get("task"))] = per_task.get(str(row.get("task")), 0) + 1
    return {metric: per_task[task] for metric, task in TASK_OF_METRIC.items() if task in per_task}


def _cell(text: str) -> str:
    flat = " ".join(str(text).split()).replace("|", "\\|")
    return flat if len(flat) <= MAX_CHARS else flat[: MAX_CHARS - 1].rstrip() + "…"


def paired(left: list[dict[str, Any]], right: list[dict[str, Any]], task: str, k: int) -> list[tuple]:
    """Return up to ``k`` (prompt, left answer, right answer) of ``task``, one per category first."""
    answers = {row.get("prompt"): row for row in right if row.get("task") == task}
    rows = [row for row in left if row.get("task") == task and row.get("prompt") in answers]
    rows.sort(key=lambda r: str(r.get("doc_id")).zfill(6))
    picked: list[dict[str, Any]] = []
    seen: set[Any] = set()
    for row in rows:  # spread over categories, then fill in file order
        if row.get("category") not in seen:
            seen.add(row.get("category"))
            picked.append(row)
    picked += [row for row in rows if row not in picked]
    return [
        (r["prompt"], r.get("response", ""), answers[r["prompt"]].get("response", "")) for r in picked[:k]
    ]


def _question(prompt: str) -> str:
    # samples hold the chat-templated prompt; show only the user's turn
    for marker in ("<|im_start|>user\n", "user\n"):
        if marker in prompt:
            prompt = prompt.split(marker, 1)[1]
            break
    return prompt.split("<|im_end|>", 1)[0]


def side_by_side(samples: Mapping[str, list[dict[str, Any]]], left: str, right: str) -> str:
    """Return markdown tables of ``left`` vs ``right`` answers to the same benign and harmful prompts."""
    parts: list[str] = []
    for heading, task in SHOWN:
        rows = paired(samples.get(left, []), samples.get(right, []), task, PER_TABLE)
        parts += [f"### {heading}", ""]
        if not rows:
            parts += [f"(no {task} samples of both {left} and {right} were found)", ""]
            continue
        parts += [f"| prompt | {left} | {right} |", "|---|---|---|"]
        parts += [f"| {_cell(_question(p))} | {_cell(a)} | {_cell(b)} |" for p, a, b in rows]
        parts.append("")
    return "\n".join(parts)
