"""Which modules get patched (spec §1.5 layer sampling, decision point D4).

"official" reproduces ``inner.py`` (Adaptive_Search_Operation): ranks by similarity, P rises with
similarity from P_L−ε to P_L+ε, and a module is patched when its Bernoulli draw is 1 — so the *most*
similar modules are the most likely to be patched, the code's literal rule. "paper" reverses the ranking
(least similar most likely patched, the paper's stated intent). "threshold", "fraction" and "all" are
deterministic alternatives.

The official code drew on the model's device (a GPU RNG after ``torch.manual_seed(42)``); here the draw
uses a CPU ``torch.Generator`` seeded with ``seed``: the same distribution, not the same bits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from mlflow_nlsr.errors import ConfigError, InputError

MODES = ("official", "paper", "threshold", "fraction", "all")


@dataclass(frozen=True)
class ModuleSelection:
    """Outcome of module selection.

    ``patched`` bool [N]; ``probability`` float [N] for the Bernoulli modes, else None; ``mode`` used.
    """

    patched: torch.Tensor
    probability: torch.Tensor | None
    mode: str

    @property
    def count(self) -> int:
        """Number of patched modules."""
        return int(self.patched.sum())


def _check_rate(name: str, value: float, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, found {value!r}")
    if not low <= value <= high:
        raise ConfigError(f"{name} must be in [{low}, {high}], found {value!r}")
    return float(value)


def rank_probabilities(
    similarity: torch.Tensor, *, layer_rate: float, epsilon: float, reverse: bool = False
) -> torch.Tensor:
    """Patch probability of each module in the rank-based rule (spec §1.5, ``inner.py:98-126``).

    Args:
        similarity: S, float [N], N >= 1.
        layer_rate: P_L in [0, 1].
        epsilon: ε >= 0.
        reverse: use ``1 − u`` instead of u (the "paper" mode: least similar most likely).

    Returns:
        float64 [N] (CPU): ``(P_L−ε) + u·2ε`` clipped to [0, 1], where ``rank[argsort(S, descending=True)]
        = [N+1, N, …, 2]`` (stable sort for ties) and u = min-max normalised rank, 1 for the most
        similar module (u = 1 when N == 1).

    """
    s = similarity.detach().to(device="cpu", dtype=torch.float64)
    n = s.numel()
    order = torch.argsort(s, descending=True, stable=True)
    rank = torch.empty(n, dtype=torch.float64)
    rank[order] = torch.arange(n + 1, 1, -1, dtype=torch.float64)
    span = rank.max() - rank.min()
    u = (rank - rank.min()) / span if n > 1 else torch.ones(n, dtype=torch.float64)
    if reverse:
        u = 1 - u
    return ((layer_rate - epsilon) + u * (2 * epsilon)).clip(0, 1)


def select_modules(
    similarity: torch.Tensor,
    *,
    mode: str,
    layer_rate: float = 0.5,
    epsilon: float = 0.2,
    tau: float | None = None,
    seed: int = 42,
) -> ModuleSelection:
    """Choose the modules to patch from their similarities S_j (spec §1.5, D4).

    Args:
        similarity: S, float [N] in module order.
        mode: "official" (Bernoulli, P rises with similarity; patched when the draw is 1), "paper"
            (Bernoulli with the ranking reversed: least similar most likely patched), "threshold"
            (patch S < tau), "fraction" (patch the ``round(layer_rate·N)`` lowest-similarity modules,
            Python rounding, stable order), "all".
        layer_rate: P_L in [0, 1] (Bernoulli centre; fraction for "fraction").
        epsilon: ε in [0, 1], half-width of the Bernoulli probability range.
        tau: similarity threshold, required for "threshold".
        seed: seed of the CPU generator of the Bernoulli draw.

    Returns:
        ModuleSelection with ``patched`` bool [N] (CPU) and ``probability`` float64 [N] for the
        Bernoulli modes (None otherwise).

    """
    if mode not in MODES:
        raise ConfigError(f"selection mode must be one of {MODES}, found {mode!r}")
    if similarity.dim() != 1:
        raise InputError(f"similarity must be 1-D [N], found shape {tuple(similarity.shape)}")
    s = similarity.detach().to(device="cpu", dtype=torch.float64)
    if not torch.isfinite(s).all():
        raise InputError("similarity holds NaN or Inf values")
    n = s.numel()
    if mode == "all":
        return ModuleSelection(torch.ones(n, dtype=torch.bool), None, mode)
    if mode == "threshold":
        if tau is None or isinstance(tau, bool) or not isinstance(tau, (int, float)) or math.isnan(tau):
            raise ConfigError(f"selection 'threshold' needs a numeric tau, found {tau!r}")
        native = similarity.detach().cpu()  # compare in the caller's dtype, like select_safelora
        native = native if native.is_floating_point() else s
        return ModuleSelection(native < float(tau), None, mode)
    layer_rate = _check_rate("layer_rate", layer_rate, 0.0, 1.0)
    if mode == "fraction":
        k = round(layer_rate * n)
        patched = torch.zeros(n, dtype=torch.bool)
        patched[torch.argsort(s, stable=True)[:k]] = True
        return ModuleSelection(patched, None, mode)
    epsilon = _check_rate("epsilon", epsilon, 0.0, 1.0)
    if n == 0:
        empty = torch.zeros(0, dtype=torch.float64)
        return ModuleSelection(torch.zeros(0, dtype=torch.bool), empty, mode)
    prob = rank_probabilities(s, layer_rate=layer_rate, epsilon=epsilon, reverse=mode == "paper")
    draw = torch.bernoulli(prob, generator=torch.Generator().manual_seed(int(seed)))
    return ModuleSelection(draw == 1, prob, mode)
