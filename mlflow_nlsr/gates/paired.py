"""Paired comparison of two gate runs on the same prompts: the exact McNemar test on their samples.jsonl.

Two models scored on the same items differ significantly only if their *discordant* items (one scored 1,
the other 0) split unevenly; comparing two rates with overlapping intervals is weaker and comparing two
point estimates says nothing. A claim like "NLSR beats the random-neuron control on ASR" should cite
:func:`compare_samples` and make it only when the result is significant.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from mlflow_nlsr.errors import InputError
from mlflow_nlsr.gates.stats import McNemar, mcnemar_paired
from mlflow_nlsr.io.jsonl import read_jsonl


def item_scores(
    rows: Iterable[Mapping[str, Any]], metric: str, task: str | None = None
) -> dict[str, tuple[int, str]]:
    """``{"<task>/<id>": (0|1, prompt)}`` of `metric` over sample rows (rows without a 0/1 score skipped).

    Raises:
        InputError: when the same item appears twice (e.g. two filters) or no row scores `metric`.

    """
    out: dict[str, tuple[int, str]] = {}
    for row in rows:
        value = (row.get("scores") or {}).get(metric)
        if (task is not None and row.get("task") != task) or value not in (0, 1, 0.0, 1.0):
            continue
        key = f"{row.get('task')}/{row.get('id') if row.get('id') is not None else row.get('doc_id')}"
        if key in out:
            raise InputError(f"item {key} is scored twice for {metric!r}; pass task= to pick one")
        out[key] = (int(value), str(row.get("prompt")))
    if not out:
        where = f" in task {task!r}" if task else ""
        raise InputError(f"no sample scores {metric!r} with 0/1 values{where}")
    return out


def compare_samples(
    samples_a: str | Path, samples_b: str | Path, metric: str = "asr", task: str | None = None
) -> McNemar:
    """Exact McNemar test of `metric` between two runs' samples.jsonl on the items both scored.

    ``only_a`` counts items where run A scored 1 and B 0 (for ``asr``: A attacked successfully, B not).

    Raises:
        InputError: when a file is unreadable, a metric is missing, or the runs share no item.

    """
    a, b = (
        item_scores(read_jsonl(Path(p), required={"task": str}, what="gate samples file"), metric, task)
        for p in (samples_a, samples_b)
    )
    differ = sorted(k for k in set(a) & set(b) if a[k][1] != b[k][1])
    if differ:
        raise InputError(
            f"{samples_a} and {samples_b} scored different prompts for {len(differ)} items (first: "
            f"{differ[0]}); a paired test needs the same prompts (same suite data, same chat template)"
        )
    try:
        return mcnemar_paired({k: v[0] for k, v in a.items()}, {k: v[0] for k, v in b.items()})
    except ValueError as exc:
        raise InputError(f"{samples_a} and {samples_b} share no item scored {metric!r}: {exc}") from exc
