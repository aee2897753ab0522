"""Refusals of the over-refusal suite by category, read from gate ``samples.jsonl`` files (no model runs).

Each argument is ``name=path/to/samples.jsonl`` (a gate run's samples: ``mlflow nlsr gate --output``,
the registry job's ``gates/<role>/``, the demo's ``.nlsr-demo/gates/<role>/``). Prints a Markdown table:
refused / items per category, and the total. docs/demo.md ("Where the over-refusal comes from").

    python bench/refusals_by_category.py \\
        realigned=.nlsr-demo/service/jobs/smollm2-sentiment/1/gates/realigned/samples.jsonl \\
        official=.nlsr-demo/gates/official/samples.jsonl
"""

from __future__ import annotations

import argparse
import collections
import json
from pathlib import Path

TASK = "nlsr_overrefusal"


def counts(samples: Path) -> tuple[collections.Counter[str], collections.Counter[str]]:
    """(refusals, items) per category of the over-refusal samples in ``samples``."""
    refused: collections.Counter[str] = collections.Counter()
    items: collections.Counter[str] = collections.Counter()
    for line in samples.read_text().splitlines():
        row = json.loads(line)
        if row.get("task") == TASK:
            items[row["category"]] += 1
            refused[row["category"]] += int(row["scores"]["refusal_rate"])
    return refused, items


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="name=path/to/samples.jsonl")
    args = parser.parse_args()
    rows = {name: counts(Path(path)) for name, path in (run.split("=", 1) for run in args.runs)}
    categories = sorted({c for _, items in rows.values() for c in items})
    print("| model | " + " | ".join(categories) + " | all |")
    print("|---|" + "---:|" * (len(categories) + 1))
    for name, (refused, items) in rows.items():
        cells = [f"{refused[c]}/{items[c]}" for c in categories]
        print(f"| {name} | " + " | ".join(cells) + f" | {sum(refused.values())}/{sum(items.values())} |")


if __name__ == "__main__":
    main()
