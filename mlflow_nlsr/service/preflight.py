"""Cheap checks of a job's inputs before any model is loaded, so a bad input fails fast and permanently.

The calibration search gates the reference models before its first realignment, so without these checks
a corrupt, mismatched or non-continuing adapter would surface as a raw PEFT/safetensors error from the
gate runner (retried as if it were transient) instead of the io layer's InputError naming the problem.
"""

from __future__ import annotations

from pathlib import Path

from mlflow_nlsr.errors import GateError
from mlflow_nlsr.gates.catalog import parse_suites
from mlflow_nlsr.gates.policy import load_gate_config
from mlflow_nlsr.io import check_compatible, check_continuation, read_adapter
from mlflow_nlsr.options import RealignOptions
from mlflow_nlsr.pipeline import resolve_mode

#: the baselines the service can gate next to the realigned model (base: only when a rule names it)
BASELINES = ("aligned", "finetuned", "base")


def check_job_inputs(
    base: Path, aligned: Path, finetuned: Path, options: RealignOptions, gate_config: str | Path | None
) -> None:
    """Raise ConfigError/GateError/InputError naming the first problem of the gate config or the adapters."""
    config = load_gate_config(gate_config)
    if config.suites is not None:
        parse_suites(config.suites)
    for rule in config.rules:
        if rule.baseline is not None and rule.baseline not in BASELINES:
            raise GateError(
                f"rule {rule.text!r} needs baseline {rule.baseline!r}, but baselines given: "
                f"{', '.join(BASELINES)}"
            )
    if resolve_mode(aligned, finetuned, options) == "lora":
        adapter_a, adapter_t = read_adapter(aligned), read_adapter(finetuned)
        check_compatible(base, adapter_a, adapter_t)
        check_continuation(adapter_a, adapter_t, force=options.force)
