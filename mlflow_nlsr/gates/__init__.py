"""Safety, over-refusal and utility gates on lm-eval, with pluggable judges and a pure verdict policy.

``run_gates`` (lm-eval, torch) is imported lazily so the pure policy API stays cheap to import.
"""

from __future__ import annotations

from typing import Any

from mlflow_nlsr.gates.catalog import DEFAULT_SUITES, SUITES, list_suites
from mlflow_nlsr.gates.policy import (
    GateConfig,
    GateReason,
    GateVerdict,
    Rule,
    evaluate_policy,
    load_gate_config,
    parse_gate_config,
    parse_rule,
)

__all__ = [
    "DEFAULT_SUITES",
    "SUITES",
    "GateConfig",
    "GateReason",
    "GateRun",
    "GateVerdict",
    "Rule",
    "evaluate_policy",
    "list_suites",
    "load_gate_config",
    "parse_gate_config",
    "parse_rule",
    "run_gates",
]


def __getattr__(name: str) -> Any:
    if name in ("run_gates", "GateRun"):
        from mlflow_nlsr.gates import runner

        return getattr(runner, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
