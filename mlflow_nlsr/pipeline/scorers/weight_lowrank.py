"""``weight-lowrank``: the rank-k reconstruction of the reference update (data-free, no model loaded)."""

from __future__ import annotations

import torch

from mlflow_nlsr import core
from mlflow_nlsr.options import RealignOptions
from mlflow_nlsr.pipeline.full.scoring import kept_rank_for, lowrank_scores, module_seed
from mlflow_nlsr.pipeline.scorers.base import Evidence, Scorer


class WeightLowRankScorer(Scorer):
    """Entries of the reference update's top-k singular subspace (k = kept rank, D2)."""

    summary = "rank-k reconstruction of the reference update; data-free"
    uses_kept_rank = True

    def factor_mask(
        self, key: str, reference: torch.Tensor, options: RealignOptions, *, per: str, evidence: Evidence,
        generator: torch.Generator,
    ) -> torch.Tensor:  # fmt: skip
        """Top entries of the exact rank-k SVD reconstruction of the factor."""
        keep = core.kept_rank(min(reference.shape), options.sparsity, options.variant)
        return core.weight_lowrank_mask(reference, options.sparsity, keep, per=per)

    def full_scores(
        self, key: str, delta_e: torch.Tensor, options: RealignOptions, *, gram: torch.Tensor | None,
        rank_cap: int,
    ) -> torch.Tensor:  # fmt: skip
        """Seeded randomised-SVD rank-k reconstruction of ΔW_e (seconds on a 14336×4096 matrix)."""
        k = kept_rank_for(tuple(delta_e.shape), options, rank_cap)
        return lowrank_scores(delta_e, k, module_seed(options.seed, key))
