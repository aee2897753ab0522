"""Suite registry: suite name -> shipped lm-eval tasks, their data files and the metric names they yield.

Extra tasks (any lm-eval task installed with its data, e.g. ``mmlu``) can be added to a run; their
primary metric is reported as ``<task>_<metric>`` and counts toward ``utility``.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from mlflow_nlsr.errors import GateError
from mlflow_nlsr.gates.suites import SUITES_DIR, data_dir


@dataclass(frozen=True)
class TaskSpec:
    """One shipped task: its lm-eval name, data file, suite, metric prefix and chat-template use."""

    name: str
    data_file: str
    suite: str
    prefix: str  # "" for safety metrics (asr, refusal_rate); "<short>_" for utility metrics
    chat_template: bool


SHIPPED_TASKS: dict[str, TaskSpec] = {
    t.name: t
    for t in (
        TaskSpec("nlsr_safety", "harmful.jsonl", "safety", "", True),
        TaskSpec("nlsr_overrefusal", "overrefusal.jsonl", "overrefusal", "", True),
        TaskSpec("nlsr_sentiment", "sentiment.jsonl", "utility", "sentiment_", True),
        TaskSpec("nlsr_arithmetic", "arithmetic.jsonl", "utility", "arithmetic_", True),
        # multiple-choice loglikelihood: the chat template drops the " A" delimiter and hurts MC scores
        TaskSpec("nlsr_knowledge", "knowledge.jsonl", "utility", "knowledge_", False),
        TaskSpec("nlsr_helpfulness", "helpfulness.jsonl", "helpfulness", "helpfulness_", True),
    )
}
SUITES: dict[str, tuple[str, ...]] = {
    "safety": ("nlsr_safety",),
    "overrefusal": ("nlsr_overrefusal",),
    "utility": ("nlsr_sentiment", "nlsr_arithmetic", "nlsr_knowledge"),
    "helpfulness": ("nlsr_helpfulness",),
}
DEFAULT_SUITES: tuple[str, ...] = ("safety", "overrefusal", "utility", "helpfulness")
SUITE_DESCRIPTIONS = {
    "safety": "harmful requests; asr = fraction answered with (unsafe) compliance (lower is better), "
    "asr_<category>, safety_refusal_rate, safety_degenerate_rate",
    "overrefusal": "benign requests that look dangerous; refusal_rate, degenerate_rate (lower is better), "
    "answered_rate",
    "utility": "sentiment acc, arithmetic exact_match, knowledge acc; utility = their mean",
    "helpfulness": "reference answers to benign prompts; helpfulness_nll = NLL per token (lower is "
    "better), helpfulness_nll_<category>, helpfulness_tokens",
}
#: flat metric names that only a suite yields (exact names, else prefixes), for :func:`suite_of_metric`
_SUITE_METRICS: dict[str, tuple[str, ...]] = {
    "safety": ("asr", "safety_"),
    "overrefusal": ("refusal_rate", "degenerate_rate", "answered_rate"),
    "utility": ("utility", "sentiment_", "arithmetic_", "knowledge_"),
    "helpfulness": ("helpfulness_",),
}


def parse_suites(value: str | Iterable[str]) -> tuple[str, ...]:
    """Split ``"safety,utility"`` (or a list) into known suite names; unknown names raise GateError."""
    names = [n.strip() for n in (value.split(",") if isinstance(value, str) else value) if n.strip()]
    if not names:
        raise GateError(f"no suite given; choose from {', '.join(SUITES)}")
    for name in names:
        if name not in SUITES:
            close = difflib.get_close_matches(name, list(SUITES), n=2)
            hint = f" Did you mean: {', '.join(close)}?" if close else ""
            raise GateError(f"unknown suite {name!r}.{hint} Suites: {', '.join(SUITES)}")
    return tuple(dict.fromkeys(names))


def tasks_for(suites: Sequence[str], extra_tasks: Sequence[str] = ()) -> list[str]:
    """Return the lm-eval task names to run for `suites` plus `extra_tasks`, without duplicates."""
    names = [t for s in parse_suites(suites) for t in SUITES[s]] if suites else []
    return list(dict.fromkeys([*names, *extra_tasks]))


def suite_of_metric(metric: str) -> str | None:
    """The shipped suite whose tasks yield `metric` (``helpfulness_nll`` -> helpfulness), else None."""
    for suite, names in _SUITE_METRICS.items():
        if any(metric == n or metric.startswith(n if n.endswith("_") else f"{n}_") for n in names):
            return suite
    return None


def count_items(data_file: str) -> int:
    """Count the non-blank lines of one suite data file (0 when it is missing)."""
    path = data_dir() / data_file
    if not path.is_file():
        return 0
    with path.open(encoding="utf-8") as fh:
        return sum(1 for line in fh if line.strip())


def list_suites() -> list[dict[str, Any]]:
    """Describe every shipped suite: name, description, and its tasks with item counts."""
    out = []
    for suite, tasks in SUITES.items():
        rows: list[dict[str, Any]] = [
            {
                "task": t,
                "data_file": SHIPPED_TASKS[t].data_file,
                "items": count_items(SHIPPED_TASKS[t].data_file),
            }
            for t in tasks
        ]
        out.append(
            {"suite": suite, "description": SUITE_DESCRIPTIONS[suite], "tasks": rows,
             "items": sum(int(r["items"]) for r in rows)}
        )  # fmt: skip
    return out


def task_manager(extra_tasks: Sequence[str] = ()) -> Any:
    """Build an lm-eval TaskManager over the shipped suites (plus lm-eval's own tasks if extras are asked)."""
    from lm_eval.tasks import TaskManager

    # indexing lm-eval's ~15k built-in task names costs ~6 s; only pay it when an extra task needs it
    needs_defaults = any(t not in SHIPPED_TASKS for t in extra_tasks)
    return TaskManager(include_path=str(SUITES_DIR), include_defaults=needs_defaults)


def check_tasks(manager: Any, tasks: Sequence[str]) -> None:
    """Raise GateError (with a did-you-mean hint) if any of `tasks` is unknown to `manager`."""
    known = set(manager.all_tasks)
    for name in tasks:
        if name not in known:
            close = difflib.get_close_matches(name, sorted(known), n=3)
            hint = f" Did you mean: {', '.join(close)}?" if close else ""
            raise GateError(f"unknown lm-eval task {name!r}.{hint}")
