"""Gate-driven calibration: climb the ladder until a realignment passes the gates (pure search loop).

The loop takes callables, so it runs without models in tests: ``realign_fn(options, out_dir) -> report``
and ``gate_fn(model_dir_or_adapter, quick) -> metrics``. For each rung (least invasive first, see
ladder.py) it realigns into ``work_dir/attempt-NN/model``, runs the quick gate and evaluates the policy
with the full gate's thresholds; a quick pass, or a miss within the quick gate's sampling error
(screen.py), is confirmed with the full gate. It stops at the
first confirmed pass, or when the budget, the ladder or the confirmations run out, or when two attempts in
a row failed a damage rule (over-refusal, utility): stronger rungs only damage more, while one damaged
rung may be an unlucky Bernoulli draw (seen on the demo model). Seed variants of a
Bernoulli rung are tried only after a near miss. When nothing passes, the attempt closest to passing (the
smallest total violation, see :func:`check`) is chosen and :attr:`CalibrationResult.rejection` says what
was tried. Wiring to the pipeline, the gates, the registry and the job store: calibrate_run.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from mlflow_nlsr.calibration.ladder import Rung, option_diff, predicted_strength
from mlflow_nlsr.calibration.screen import SampleSizesFn, within_sampling_error
from mlflow_nlsr.errors import ConfigError
from mlflow_nlsr.gates.policy import GateConfig, evaluate_policy
from mlflow_nlsr.options import RealignOptions

RealignFn = Callable[[RealignOptions, Path], Mapping[str, Any]]
GateFn = Callable[[Path, bool], Mapping[str, float]]
#: what the quick gate's thresholds are computed from: the references' full-gate or quick-gate metrics
QuickBaselines = Literal["full", "quick"]
#: failing rules on metrics with these prefixes ask for a stronger repair; any other failure is damage
SAFETY_PREFIXES = ("asr",)
STRENGTH_KEYS = ("entries_changed", "entries_total", "changed_fraction", "relative_change")


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
        """JSON view."""
        return {
            "max_attempts": self.max_attempts,
            "time_budget_s": self.time_budget_s,
            "max_confirmations": self.max_confirmations,
            "seed_margin": self.seed_margin,
            "screen_z": self.screen_z,
        }


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

    @property
    def damage(self) -> bool:
        """True when a non-safety rule (over-refusal, utility …) failed."""
        return any(not m.startswith(SAFETY_PREFIXES) for m in self.failed)

    def to_dict(self) -> dict[str, Any]:
        """JSON view."""
        return {
            "metrics": dict(self.metrics),
            "passed": self.passed,
            "reasons": list(self.reasons),
            "failed": list(self.failed),
            "score": round(self.score, 6),
        }


def check(
    config: GateConfig, metrics: Mapping[str, float], baselines: Mapping[str, Mapping[str, float]]
) -> GateCheck:
    """Evaluate the policy; score = Σ |value − threshold| over failing rules (metrics are rates in [0, 1])."""
    verdict = evaluate_policy(config, metrics, baselines)
    failing = [r for r in verdict.reasons if not r.passed]
    return GateCheck(
        metrics={k: float(v) for k, v in metrics.items()},
        passed=verdict.passed,
        reasons=tuple(r.message for r in verdict.reasons),
        failed=tuple(dict.fromkeys(r.metric for r in failing)),
        score=sum(abs(r.value - r.threshold) for r in failing),
        gaps=tuple((r.metric, float(r.value), float(r.threshold)) for r in failing),
    )


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
        """JSON view (the entries of the report's ``calibration.attempts``)."""
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
        """The ``calibration`` section of nlsr_report.json."""
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


def _strength(report: Mapping[str, Any]) -> dict[str, Any]:
    raw = report.get("strength") or {}
    return {k: raw[k] for k in STRENGTH_KEYS if k in raw}


def _family_last(attempts: Sequence[Attempt], primary: str) -> Attempt | None:
    family = [a for a in attempts if a.rung.name == primary or a.rung.retry_of == primary]
    return family[-1] if family else None


def search(
    options: RealignOptions,
    ladder: Sequence[Rung],
    *,
    realign_fn: RealignFn,
    gate_fn: GateFn,
    references: Mapping[str, Path],
    config: GateConfig,
    work_dir: Path,
    budget: Budget | None = None,
    confirm: bool = True,
    damage_patience: int | None = 2,
    clock: Callable[[], float] = time.monotonic,
    on_attempt: Callable[[Attempt], None] | None = None,
    quick_gate: Mapping[str, Any] | None = None,
    quick_baselines: QuickBaselines = "full",
    fallback: bool = True,
    sample_sizes: SampleSizesFn | None = None,
) -> CalibrationResult:
    """Try `ladder` in order until a rung passes the quick gate and (if `confirm`) the full gate.

    `references` maps baseline names (``finetuned``, ``aligned``) to model dirs, gated with `gate_fn`
    (once per gate kind). The quick gate screens an attempt's quick-gate metrics against the
    references' full-gate metrics (`quick_baselines` "full", the default with `confirm`: the full
    gate's own thresholds) or against the references' quick-gate metrics ("quick": a paired test on
    the same few items, stricter when the references happen to do well on them). The first attempt
    always runs; a later one starts only while the attempt count is under ``budget.max_attempts`` and
    the time left is at least the slowest attempt so far. The climb stops after `damage_patience`
    attempts in a row failed a damage rule (None: never). With `fallback`, a search that found nothing
    gives the configured options themselves the full gate unless it already judged them: the climb's
    own attempt at them when it made one (its record gains the full verdict), else one more attempt
    outside the budget. Calibration never rejects what the fixed options would pass.
    With `sample_sizes` (an attempt dir -> per-metric (quick, full) item counts) and the full gate's
    thresholds, a quick-gate miss within ``budget.screen_z`` standard errors (screen.py) is confirmed
    with the full gate too (the attempt's ``screened``).
    """
    if not ladder:
        raise ConfigError("the calibration ladder is empty")
    if quick_baselines not in ("full", "quick"):
        raise ConfigError(f"quick_baselines must be 'full' or 'quick', found {quick_baselines!r}")
    budget = budget or Budget()
    start = clock()
    baselines: dict[bool, dict[str, dict[str, float]]] = {}  # by gate kind (quick?), gated once

    def references_gated(quick: bool) -> dict[str, dict[str, float]]:
        if quick not in baselines:
            baselines[quick] = {role: dict(gate_fn(Path(path), quick)) for role, path in references.items()}
        return baselines[quick]

    paired = quick_baselines == "quick" or not confirm
    quick_base = references_gated(paired)
    attempts: list[Attempt] = []

    def make_attempt(rung: Rung, *, always_full: bool = False) -> Attempt:
        began = clock()
        out = Path(work_dir) / f"attempt-{len(attempts) + 1:02d}" / "model"
        candidate = rung.apply(options)
        report = realign_fn(candidate, out)
        quick = check(config, gate_fn(out, True), quick_base)
        screened = (
            confirm
            and not paired
            and sample_sizes is not None
            and within_sampling_error(quick.gaps, sample_sizes(out), budget.screen_z)
        )
        full = None
        if confirm and (quick.passed or screened or always_full):
            full = check(config, gate_fn(out, False), references_gated(False))
        return Attempt(
            number=len(attempts) + 1,
            rung=rung,
            options=option_diff(options, candidate),
            strength=_strength(report),
            patched_modules=report.get("patched_modules"),
            quick=quick,
            full=full,
            seconds=clock() - began,
            output=out,
            screened=screened,
        )

    confirmations, slowest, damaged = 0, 0.0, 0
    stop = "ladder exhausted"
    for rung in ladder:
        if rung.retry_of is not None:
            last = _family_last(attempts, rung.retry_of)
            if last is None or last.passed or last.final.score > budget.seed_margin:
                continue  # seed variants only after a near miss of the same strength
        elif damage_patience is not None and damaged >= damage_patience:
            stop = f"damage ({damaged} attempts in a row failed an over-refusal/utility rule)"
            break
        if len(attempts) >= budget.max_attempts:
            stop = f"max attempts ({budget.max_attempts})"
            break
        if attempts and budget.time_budget_s is not None and clock() - start + slowest > budget.time_budget_s:
            stop = f"time budget ({budget.time_budget_s:g}s)"
            break
        attempt = make_attempt(rung)
        confirmations += attempt.full is not None
        attempts.append(attempt)
        slowest = max(slowest, attempt.seconds)
        if on_attempt is not None:
            on_attempt(attempt)
        if attempt.passed:
            stop = "passed"
            break
        if attempt.full is not None and confirmations >= budget.max_confirmations:
            stop = f"confirmations ({budget.max_confirmations} full-gate confirmations failed)"
            break
        damaged = damaged + 1 if attempt.final.damage else 0
    if fallback and not attempts[-1].passed:
        same = [i for i, a in enumerate(attempts) if a.rung.apply(options) == options]
        if not any(attempts[i].full is not None or not confirm for i in same):
            # never leave the configured options screened out by the quick gate alone: the full gate
            # judges the climb's own attempt at them, or one more attempt outside the budget
            if same:
                earlier = attempts[same[0]]
                began = clock()
                full = check(config, gate_fn(earlier.output, False), references_gated(False))
                attempt = replace(earlier, full=full, seconds=earlier.seconds + clock() - began)
                attempts[same[0]] = attempt
            else:
                attempt = make_attempt(_configured_rung(options, ladder), always_full=True)
                attempts.append(attempt)
            if on_attempt is not None:
                on_attempt(attempt)
            if attempt.passed:
                stop = f"{stop}; the configured options passed the full gate"
    passing = [a for a in attempts if a.passed]
    chosen = passing[-1] if passing else best_failing(attempts)
    return CalibrationResult(
        attempts=tuple(attempts),
        chosen=chosen,
        stop_reason=stop,
        baselines=quick_base,
        budget=budget,
        elapsed_s=clock() - start,
        ladder=tuple(ladder),
        quick_gate={
            **dict(quick_gate or {}),
            "baselines_from": "quick" if paired else "full",
        },
    )


def _configured_rung(options: RealignOptions, ladder: Sequence[Rung]) -> Rung:
    """The ladder's rung that is the configured options, else a "configured" rung without changes."""
    same = [r for r in ladder if r.apply(options) == options and r.retry_of is None]
    return same[0] if same else Rung("configured", {}, predicted_strength(options))


def best_failing(attempts: Sequence[Attempt]) -> Attempt:
    """The attempt closest to passing: smallest violation, then fewest failing rules, then least invasive."""
    if not attempts:
        raise ConfigError("no calibration attempt to choose from")
    return min(
        attempts,
        key=lambda a: (a.final.score, len(a.final.failed), a.rung.predicted_strength, a.number),
    )
