"""The calibration ladder: repair strengths from least to most invasive, as a pure, deterministic list.

feasibility.md "What mattered" #1: NLSR's effect is governed by the patch magnitude, the product of the
reference's amplification, the fraction of entries kept as safety-critical and the fraction of modules
patched. Too small does nothing; too large garbles the model or makes it over-refuse. Each rung sets
(sparsity, modules, beta) and is ordered by its *predicted strength*::

    predicted = |amplification(variant, beta) − 1| × √((1 − sparsity) × expected module fraction)

so "least invasive" is a number (a transplanted entry moves by about (amplification − 1) × its aligned
value; the Frobenius norm of the change grows with the square root of the entries moved). The
measured strength of every attempt (``report["strength"]``: entries changed and the relative Frobenius
change of the update) is recorded next to it. Rungs whose module
choice is a Bernoulli draw get seed variants, tried only after a near miss (see calibrate.py). A seed
variant changes only ``selection_seed``: the same safety-critical neurons, another draw of modules, so
its realignment reuses the primary's ActSVD pass (pipeline.projection_cache.ProjectionCache).
docs/calibration.md documents the default ladder.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mlflow_nlsr.core import amplification
from mlflow_nlsr.errors import ConfigError
from mlflow_nlsr.options import METHODS, RealignOptions

#: (sparsity, fraction of modules, beta) of the β ≥ 0.9 climb: more entries, then more modules, then a
#: stronger reference (the whole ladder until 2026-11-29); 1.0 modules = selection "all"
CLIMB_LEVELS: tuple[tuple[float, float, float], ...] = (
    (0.9, 0.25, 0.9),
    (0.9, 0.5, 0.9),
    (0.8, 0.5, 0.9),  # the paper's / official code's configuration
    (0.7, 0.5, 0.9),
    (0.8, 1.0, 0.9),
    (0.5, 0.5, 0.9),
    (0.7, 1.0, 0.9),
    (0.5, 1.0, 0.9),
    (0.5, 1.0, 1.1),
)
#: the default rungs: the climb plus one gentle and wide level, 40 % of entries in every module moved to
#: 1.2 × the aligned values (on the demo model the only configuration that repaired the lightest attack,
#: p = 0.05, within the utility rule)
DEFAULT_LEVELS: tuple[tuple[float, float, float], ...] = ((0.6, 1.0, 0.6), *CLIMB_LEVELS)
BERNOULLI = ("official", "paper")
#: seed variants per Bernoulli rung: the seed alone swings ASR by ±15 points (feasibility.md), and a
#: variant only re-draws modules (``selection_seed``), so it costs a gate run, not an ActSVD pass
SEED_VARIANTS = 2
#: the knobs a rung may set; every other option is the caller's
LADDER_KNOBS = ("sparsity", "beta", "selection", "layer_rate", "selection_seed")


@dataclass(frozen=True)
class Rung:
    """One repair strength: option changes, their predicted strength, and (for a seed variant) its primary."""

    name: str
    changes: Mapping[str, Any] = field(hash=False)
    predicted_strength: float
    retry_of: str | None = None

    def apply(self, options: RealignOptions) -> RealignOptions:
        """Return `options` with this rung's changes."""
        return options.replace(**dict(self.changes))

    def to_dict(self) -> dict[str, Any]:
        """JSON view."""
        return {
            "name": self.name,
            "changes": dict(self.changes),
            "predicted_strength": round(self.predicted_strength, 6),
            "retry_of": self.retry_of,
        }


def expected_fraction(selection: str, layer_rate: float, epsilon: float) -> float:
    """Expected fraction of modules patched: 1 for "all", P_L for "fraction", the clipped Bernoulli mean."""
    if selection == "all":
        return 1.0
    if selection == "fraction":
        return layer_rate
    if selection in BERNOULLI:  # P = clip(P_L − ε + 2εu, 0, 1), u uniform over the ranks
        steps = 200
        low, width = layer_rate - epsilon, 2 * epsilon
        return sum(min(1.0, max(0.0, low + width * (i + 0.5) / steps)) for i in range(steps)) / steps
    return 0.5  # threshold: unknown before the similarities are measured


def predicted_strength(options: RealignOptions) -> float:
    """|amplification − 1| × √(kept fraction × expected module fraction) (0 for the SafeLoRA methods).

    A transplanted entry moves by about (amplification − 1) × its aligned value, and the Frobenius norm
    of the change grows with the square root of the entries moved; on the demo model its Spearman
    correlation with the measured relative change is 0.98 over 13 configurations (β 0.6–1.3, sparsity
    0.5–0.9, half or all modules; docs/calibration.md). β = 0.5 in the official variant predicts 0: the
    reference is the aligned model, and only the fine-tune's own drift on those entries is undone.
    """
    if not METHODS.get(options.method).tunable_strength:
        return 0.0
    kept = 1.0 - options.sparsity
    modules = expected_fraction(options.selection, options.layer_rate, options.epsilon)
    return abs(amplification(options.variant, options.beta) - 1.0) * math.sqrt(kept * modules)


def _level_changes(options: RealignOptions, sparsity: float, modules: float, beta: float) -> dict[str, Any]:
    if modules >= 1.0:
        return {"sparsity": sparsity, "beta": beta, "selection": "all"}
    selection = options.selection if options.selection in (*BERNOULLI, "fraction") else "official"
    return {"sparsity": sparsity, "beta": beta, "selection": selection, "layer_rate": modules}


def _name(changes: Mapping[str, Any]) -> str:
    modules = "all" if changes["selection"] == "all" else f"{changes['layer_rate']:g}"
    return f"sp{changes['sparsity']:g}-mod{modules}-b{changes['beta']:g}"


def build_ladder(
    options: RealignOptions,
    levels: Sequence[tuple[float, float, float]] = DEFAULT_LEVELS,
    *,
    seed_variants: int = SEED_VARIANTS,
) -> tuple[Rung, ...]:
    """The rungs for `options`, sorted by predicted strength (ties: fewer changed knobs, then name).

    Each level is (sparsity, fraction of modules, beta); other options are kept. A rung whose selection
    is a Bernoulli draw is followed by `seed_variants` copies whose module draw uses the seeds
    ``draw_seed+1 …`` (``selection_seed``; the neuron masks keep ``seed``). SafeLoRA methods
    have no strength knobs here: their ladder is the configured options alone.
    """
    if seed_variants < 0:
        raise ConfigError(f"seed_variants must be >= 0, found {seed_variants}")
    if not METHODS.get(options.method).tunable_strength:
        return (Rung("configured", {}, predicted_strength(options)),)
    if not levels:
        raise ConfigError("a calibration ladder needs at least one (sparsity, modules, beta) level")
    primaries: dict[str, Rung] = {}
    for level in levels:
        if len(level) != 3:
            raise ConfigError(f"a ladder level is (sparsity, modules, beta), found {level!r}")
        sparsity, modules, beta = (float(x) for x in level)
        if not 0.0 < modules <= 1.0:
            raise ConfigError(f"a ladder level's module fraction must be in (0, 1], found {modules}")
        changes = _level_changes(options, sparsity, modules, beta)
        candidate = options.replace(**changes)  # validates the level
        name = _name(changes)
        primaries.setdefault(name, Rung(name, changes, predicted_strength(candidate)))

    def changed_knobs(rung: Rung) -> int:
        return sum(1 for k, v in rung.changes.items() if getattr(options, k) != v)

    ordered = sorted(
        primaries.values(), key=lambda r: (round(r.predicted_strength, 9), changed_knobs(r), r.name)
    )
    rungs: list[Rung] = []
    for rung in ordered:
        rungs.append(rung)
        if rung.changes["selection"] in BERNOULLI:
            for j in range(1, seed_variants + 1):
                seed = options.draw_seed + j
                changes = {**rung.changes, "selection_seed": seed}
                rungs.append(Rung(f"{rung.name}-seed{seed}", changes, rung.predicted_strength, rung.name))
    return tuple(rungs)


def option_diff(base: RealignOptions, chosen: RealignOptions) -> dict[str, Any]:
    """The options that differ between `base` and `chosen` (``extra`` ignored), in field order."""
    old, new = base.to_dict(), chosen.to_dict()
    return {k: v for k, v in new.items() if k != "extra" and old.get(k) != v}
