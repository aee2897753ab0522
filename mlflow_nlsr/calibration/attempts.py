"""The bounds of one calibration search and what it records: gate checks, attempts, the result.

Pure data and the policy check; the loop that makes them is search.py. The result's :meth:`section
<CalibrationResult.section>` is the report's ``calibration_search`` section (report_sections.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mlflow_nlsr.calibration.ladder import Rung
from mlflow_nlsr.errors import ConfigError, GateError
from mlflow_nlsr.gates.policy import GateConfig, evaluate_policy

#: failing rules on metrics with these prefixes ask for a stronger repair; any other failure is damage
SAFETY_PREFIXES = ("asr",)
#: gate metrics that are not rates in [0, 1]: their misses count relative to the threshold (:func:`miss`)
UNSCALED_PREFIXES = ("helpfulness_nll",)


@dataclass(frozen=True)
class Budget:
    """Bounds of one search: attempts, wall time, full-gate confirmations, near-miss margin, screen width.

    `screen_z`: a quick-gate miss within `screen_z` standard errors of the full gate's estimate
    (screen.py) is still confirmed with the full gate; 0 takes the quick verdict as final.
    """

    max_attempts: int = 8
    time_budget_s: float | None = 3600.0
    max_confirmations: int = 3
    seed_margin: float = 0.15
    screen_z: float = 1.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.max_confirmations < 1:
            raise ConfigError(
                f"max_attempts and max_confirmations must be >= 1, found {self.max_attempts} and "
                f"{self.max_confirmations}"
            )
        if self.time_budget_s is not None and self.time_budget_s <= 0:
            raise ConfigError(f"time_budget_s must be > 0 seconds (or None), found {self.time_budget_s}")
        if self.seed_margin < 0 or self.screen_z < 0:
            raise ConfigError(
                f"seed_margin and screen_z must be >= 0, found {self.seed_margin} and {self.screen_z}"
            )

    def to_dict(self) -> dict[str, Any]:
        """JSON view: every bound by its field name."""
        return asdict(self)


@dataclass(frozen=True)
class GateCheck:
    """One gate evaluation: metrics, verdict, the failing metrics and the total violation (0 = pass)."""

    metrics: Mapping[str, float]
    passed: bool
    reasons: tuple[str, ...]
    failed: tuple[str, ...]
    score: float
    #: (metric, value, threshold) of every failing rule
    gaps: tuple[tuple[str, float, float], ...] = ()
    #: failing damage rules the fine-tune fails too (e.g. ``helpfulness_nll <= base``): not the repair's doing
    inherited: tuple[str, ...] = ()
    #: metric of each failing rule the fine-tune passes
    caused: tuple[str, ...] | None = None

    @property
    def damage(self) -> bool:
        """True when a non-safety rule (over-refusal, utility …) failed that the fine-tune itself passes."""
        failed = self.failed if self.caused is None else self.caused
        return any(not m.startswith(SAFETY_PREFIXES) for m in failed)

    def to_dict(self) -> dict[str, Any]:
        """JSON view."""
        return {
            "metrics": dict(self.metrics),
            "passed": self.passed,
            "reasons": list(self.reasons),
            "failed": list(self.failed),
            "score": round(self.score, 6),
            **({"inherited": list(self.inherited)} if self.inherited else {}),
        }


def miss(metric: str, value: float, threshold: float) -> float:
    """How far a failing rule is from passing, on a rate's scale.

    A rate (ASR, over-refusal, accuracy: in [0, 1]) misses by ``|value − threshold|``; a metric on
    another scale (``helpfulness_nll``, nats per token) by that gap relative to the threshold, so 10 %
    worse than the allowed NLL weighs like 10 points of a rate instead of whatever nats it is.
    """
    gap = abs(value - threshold)
    if metric.startswith(UNSCALED_PREFIXES):
        return gap / max(abs(threshold), 1e-9)
    return gap


def check(
    config: GateConfig, metrics: Mapping[str, float], baselines: Mapping[str, Mapping[str, float]]
) -> GateCheck:
    """Evaluate the policy; score = Σ :func:`miss` over failing rules (0 on a pass)."""
    verdict = evaluate_policy(config, metrics, baselines)
    failing = [r for r in verdict.reasons if not r.passed]
    damage_rules = {r.rule for r in failing if not r.metric.startswith(SAFETY_PREFIXES)}
    inherited = _failed_by_finetune(config, baselines) & damage_rules
    return GateCheck(
        metrics={k: float(v) for k, v in metrics.items()},
        passed=verdict.passed,
        reasons=tuple(r.message for r in verdict.reasons),
        failed=tuple(dict.fromkeys(r.metric for r in failing)),
        score=sum(miss(r.metric, r.value, r.threshold) for r in failing),
        gaps=tuple((r.metric, float(r.value), float(r.threshold)) for r in failing),
        inherited=tuple(r.rule for r in failing if r.rule in inherited),
        caused=tuple(r.metric for r in failing if r.rule not in inherited),
    )


def _failed_by_finetune(config: GateConfig, baselines: Mapping[str, Mapping[str, float]]) -> set[str]:
    """The rules the fine-tune's own metrics fail (none when it was not gated on every metric)."""
    finetuned = baselines.get("finetuned")
    if not finetuned:
        return set()
    try:
        return {r.rule for r in evaluate_policy(config, finetuned, baselines).reasons if not r.passed}
    except GateError:  # a metric the fine-tune's gate did not measure: no inheritance claimed
        return set()


@dataclass(frozen=True)
class Attempt:
    """One rung tried: its options, measured strength, quick (and full) gate, time and output dir."""

    number: int
    rung: Rung
    options: Mapping[str, Any]
    strength: Mapping[str, Any]
    patched_modules: int | None
    quick: GateCheck
    full: GateCheck | None
    seconds: float
    output: Path
    #: the quick gate failed within its sampling error, so the full gate judged the attempt
    screened: bool = False

    @property
    def final(self) -> GateCheck:
        """The most reliable evaluation: the full gate when it ran, else the quick one."""
        return self.full if self.full is not None else self.quick

    @property
    def passed(self) -> bool:
        """The full gate's verdict when it ran (after a quick pass, or as the fallback), else the quick's."""
        return self.full.passed if self.full is not None else self.quick.passed

    def summary(self) -> str:
        """One line: rung, strength, and the failing rules (or PASS)."""
        rel = self.strength.get("relative_change")
        where = f"{self.rung.name} (predicted {self.rung.predicted_strength:.3f}"
        where += f", relative change {rel:.3f})" if isinstance(rel, (int, float)) else ")"
        if self.passed:
            return f"#{self.number} {where}: PASS"
        gate = "full" if self.full is not None else "quick"
        fails = "; ".join(
            m.split(" (")[0].removeprefix("FAIL: ") for m in self.final.reasons if m.startswith("FAIL")
        )
        return f"#{self.number} {where}: {gate} gate FAIL {fails}"

    def to_dict(self) -> dict[str, Any]:
        """JSON view (the entries of the report's ``calibration_search.attempts``)."""
        return {
            "attempt": self.number,
            "rung": self.rung.name,
            "options": dict(self.options),
            "predicted_strength": round(self.rung.predicted_strength, 6),
            "strength": dict(self.strength),
            "patched_modules": self.patched_modules,
            "quick": self.quick.to_dict(),
            "full": self.full.to_dict() if self.full is not None else None,
            "screened": self.screened,
            "passed": self.passed,
            "seconds": round(self.seconds, 3),
        }


@dataclass(frozen=True)
class CalibrationResult:
    """Every attempt, the chosen one (first pass, else closest to passing) and why the search ended."""

    attempts: tuple[Attempt, ...]
    chosen: Attempt
    stop_reason: str
    baselines: Mapping[str, Mapping[str, float]]
    budget: Budget
    elapsed_s: float
    ladder: tuple[Rung, ...] = ()
    quick_gate: Mapping[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        """True when the chosen attempt passed its gates."""
        return self.chosen.passed

    @property
    def rejection(self) -> str | None:
        """None on a pass; else what was tried, why the search stopped and which attempt is closest."""
        if self.passed:
            return None
        tried = " | ".join(a.summary() for a in self.attempts)
        return (
            f"calibration found no passing configuration in {len(self.attempts)} attempt(s), stopped by "
            f"{self.stop_reason}; closest to passing: #{self.chosen.number} {self.chosen.rung.name} "
            f"(violation {self.chosen.final.score:.4f}). Tried: {tried}"
        )

    def section(self) -> dict[str, Any]:
        """The ``calibration_search`` section of nlsr_report.json."""
        return {
            "attempts": [a.to_dict() for a in self.attempts],
            "chosen": self.chosen.number,
            "chosen_rung": self.chosen.rung.name,
            "chosen_options": dict(self.chosen.options),
            "passed": self.passed,
            "stop_reason": self.stop_reason,
            "rejection": self.rejection,
            "quick_gate": {
                **dict(self.quick_gate),
                "baselines": {k: dict(v) for k, v in self.baselines.items()},
            },
            "budget": {**self.budget.to_dict(), "elapsed_s": round(self.elapsed_s, 3)},
            "ladder": [r.to_dict() for r in self.ladder],
            "strength_measure": "predicted = |amplification - 1| x sqrt((1 - sparsity) x expected module "
            "fraction); "
            "measured = report strength (entries changed, relative Frobenius change of the update)",
        }


def best_failing(attempts: Sequence[Attempt]) -> Attempt:
    """The attempt closest to passing: smallest violation, then fewest failing rules, then least invasive."""
    if not attempts:
        raise ConfigError("no calibration attempt to choose from")
    return min(
        attempts,
        key=lambda a: (a.final.score, len(a.final.failed), a.rung.predicted_strength, a.number),
    )
