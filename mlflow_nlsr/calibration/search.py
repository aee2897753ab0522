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
was tried. Wiring to the pipeline and the gates, and the job's hooks: run.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from mlflow_nlsr.calibration.attempts import (
    SAFETY_PREFIXES,
    Attempt,
    Budget,
    CalibrationResult,
    GateCheck,
    best_failing,
    check,
)
from mlflow_nlsr.calibration.ladder import Rung, option_diff, predicted_strength
from mlflow_nlsr.calibration.screen import SampleSizesFn, within_sampling_error
from mlflow_nlsr.errors import ConfigError
from mlflow_nlsr.gates.policy import GateConfig
from mlflow_nlsr.options import RealignOptions

__all__ = [
    "SAFETY_PREFIXES",
    "Attempt",
    "Budget",
    "CalibrationResult",
    "GateCheck",
    "GateFn",
    "RealignFn",
    "SearchSettings",
    "best_failing",
    "check",
    "search",
]

RealignFn = Callable[[RealignOptions, Path], Mapping[str, Any]]
GateFn = Callable[[Path, bool], Mapping[str, float]]
#: what the quick gate's thresholds are computed from: the references' full-gate or quick-gate metrics
QuickBaselines = Literal["full", "quick"]
STRENGTH_KEYS = ("entries_changed", "entries_total", "changed_fraction", "relative_change")


@dataclass(frozen=True)
class SearchSettings:
    """How one search runs (see :func:`search` for what each setting changes)."""

    config: GateConfig
    work_dir: Path
    budget: Budget = field(default_factory=Budget)
    confirm: bool = True
    damage_patience: int | None = 2
    clock: Callable[[], float] = time.monotonic
    quick_gate: Mapping[str, Any] = field(default_factory=dict)
    quick_baselines: QuickBaselines = "full"
    fallback: bool = True
    sample_sizes: SampleSizesFn | None = None

    def __post_init__(self) -> None:
        if self.quick_baselines not in ("full", "quick"):
            raise ConfigError(f"quick_baselines must be 'full' or 'quick', found {self.quick_baselines!r}")

    @property
    def paired(self) -> bool:
        """The quick gate is judged against the references' quick-gate metrics (same items)."""
        return self.quick_baselines == "quick" or not self.confirm


def search(
    options: RealignOptions,
    ladder: Sequence[Rung],
    *,
    realign_fn: RealignFn,
    gate_fn: GateFn,
    references: Mapping[str, Path],
    on_attempt: Callable[[Attempt], None] | None = None,
    **settings: Any,
) -> CalibrationResult:
    """Try `ladder` in order until a rung passes the quick gate and (if `confirm`) the full gate.

    `settings` are the fields of :class:`SearchSettings` (``config`` and ``work_dir`` are required).
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
    settings["budget"] = settings.get("budget") or Budget()
    settings["quick_gate"] = settings.get("quick_gate") or {}
    run = _Search(options, tuple(ladder), realign_fn, gate_fn, references, SearchSettings(**settings))
    return run.result(run.climb(on_attempt))


class _Search:
    """One search's state: the references' baselines per gate kind and the attempts made so far."""

    def __init__(
        self,
        options: RealignOptions,
        ladder: tuple[Rung, ...],
        realign_fn: RealignFn,
        gate_fn: GateFn,
        references: Mapping[str, Path],
        settings: SearchSettings,
    ) -> None:
        self.options, self.ladder, self.settings = options, ladder, settings
        self.realign_fn, self.gate_fn, self.references = realign_fn, gate_fn, references
        self.start = settings.clock()
        self.baselines: dict[bool, dict[str, dict[str, float]]] = {}  # by gate kind (quick?), gated once
        self.quick_base = self.references_gated(settings.paired)
        self.attempts: list[Attempt] = []

    def references_gated(self, quick: bool) -> dict[str, dict[str, float]]:
        """The references' metrics of one gate kind (gated on first use)."""
        if quick not in self.baselines:
            gated = {role: dict(self.gate_fn(Path(path), quick)) for role, path in self.references.items()}
            self.baselines[quick] = gated
        return self.baselines[quick]

    def make_attempt(self, rung: Rung, *, always_full: bool = False) -> Attempt:
        """Realign with `rung`, quick-gate it, and full-gate it when it passed or was screened in."""
        s = self.settings
        began = s.clock()
        out = Path(s.work_dir) / f"attempt-{len(self.attempts) + 1:02d}" / "model"
        candidate = rung.apply(self.options)
        report = self.realign_fn(candidate, out)
        quick = check(s.config, self.gate_fn(out, True), self.quick_base)
        screened = bool(
            s.confirm
            and not s.paired
            and s.sample_sizes is not None
            and within_sampling_error(quick.gaps, s.sample_sizes(out), s.budget.screen_z)
        )
        full = None
        if s.confirm and (quick.passed or screened or always_full):
            full = check(s.config, self.gate_fn(out, False), self.references_gated(False))
        return Attempt(
            number=len(self.attempts) + 1,
            rung=rung,
            options=option_diff(self.options, candidate),
            strength=_strength(report),
            patched_modules=report.get("patched_modules"),
            quick=quick,
            full=full,
            seconds=s.clock() - began,
            output=out,
            screened=screened,
        )

    def skip(self, rung: Rung) -> bool:
        """A seed variant runs only after a near miss of its primary rung."""
        if rung.retry_of is None:
            return False
        last = _family_last(self.attempts, rung.retry_of)
        return last is None or last.passed or last.final.score > self.settings.budget.seed_margin

    def out_of_budget(self, rung: Rung, damaged: int, slowest: float) -> str | None:
        """Why the climb must stop before `rung`, or None (damage stops primary rungs only)."""
        budget, patience = self.settings.budget, self.settings.damage_patience
        if rung.retry_of is None and patience is not None and damaged >= patience:
            return f"damage ({damaged} attempts in a row failed an over-refusal/utility rule)"
        if len(self.attempts) >= budget.max_attempts:
            return f"max attempts ({budget.max_attempts})"
        elapsed = self.settings.clock() - self.start
        if self.attempts and budget.time_budget_s is not None and elapsed + slowest > budget.time_budget_s:
            return f"time budget ({budget.time_budget_s:g}s)"
        return None

    def climb(self, on_attempt: Callable[[Attempt], None] | None) -> str:
        """Try the rungs in order; return why the climb stopped (after the fallback, if any)."""
        confirmations, slowest, damaged = 0, 0.0, 0
        stop = "ladder exhausted"
        for rung in self.ladder:
            if self.skip(rung):
                continue
            why = self.out_of_budget(rung, damaged, slowest)
            if why is not None:
                stop = why
                break
            attempt = self.make_attempt(rung)
            confirmations += attempt.full is not None
            self.attempts.append(attempt)
            slowest = max(slowest, attempt.seconds)
            if on_attempt is not None:
                on_attempt(attempt)
            if attempt.passed:
                return "passed"
            if attempt.full is not None and confirmations >= self.settings.budget.max_confirmations:
                limit = self.settings.budget.max_confirmations
                stop = f"confirmations ({limit} full-gate confirmations failed)"
                break
            damaged = damaged + 1 if attempt.final.damage else 0
        return self.fallback(stop, on_attempt)

    def fallback(self, stop: str, on_attempt: Callable[[Attempt], None] | None) -> str:
        """Never leave the configured options screened out by the quick gate alone.

        The full gate judges the climb's own attempt at them, or one more attempt outside the budget.
        """
        if not self.settings.fallback or self.attempts[-1].passed:
            return stop
        confirm = self.settings.confirm
        same = [i for i, a in enumerate(self.attempts) if a.rung.apply(self.options) == self.options]
        if any(self.attempts[i].full is not None or not confirm for i in same):
            return stop
        if same:
            earlier = self.attempts[same[0]]
            began = self.settings.clock()
            metrics = self.gate_fn(earlier.output, False)
            full = check(self.settings.config, metrics, self.references_gated(False))
            attempt = replace(earlier, full=full, seconds=earlier.seconds + self.settings.clock() - began)
            self.attempts[same[0]] = attempt
        else:
            attempt = self.make_attempt(_configured_rung(self.options, self.ladder), always_full=True)
            self.attempts.append(attempt)
        if on_attempt is not None:
            on_attempt(attempt)
        return f"{stop}; the configured options passed the full gate" if attempt.passed else stop

    def result(self, stop: str) -> CalibrationResult:
        """The last passing attempt, else the one closest to passing, with every attempt."""
        passing = [a for a in self.attempts if a.passed]
        return CalibrationResult(
            attempts=tuple(self.attempts),
            chosen=passing[-1] if passing else best_failing(self.attempts),
            stop_reason=stop,
            baselines=self.quick_base,
            budget=self.settings.budget,
            elapsed_s=self.settings.clock() - self.start,
            ladder=self.ladder,
            quick_gate={
                **dict(self.settings.quick_gate),
                "baselines_from": "quick" if self.settings.paired else "full",
            },
        )


def _strength(report: Mapping[str, Any]) -> dict[str, Any]:
    raw = report.get("strength") or {}
    return {k: raw[k] for k in STRENGTH_KEYS if k in raw}


def _family_last(attempts: Sequence[Attempt], primary: str) -> Attempt | None:
    family = [a for a in attempts if a.rung.name == primary or a.rung.retry_of == primary]
    return family[-1] if family else None


def _configured_rung(options: RealignOptions, ladder: Sequence[Rung]) -> Rung:
    """The ladder's rung that is the configured options, else a "configured" rung without changes."""
    same = [r for r in ladder if r.apply(options) == options and r.retry_of is None]
    return same[0] if same else Rung("configured", {}, predicted_strength(options))
