"""``weight-lowrank``: the rank-k reconstruction of the reference update (data-free, no model loaded)."""

from __future__ import annotations

import torch

from mlflow_nlsr import core
from mlflow_nlsr.pipeline.full.scoring import kept_rank_for, lowrank_scores, module_seed
from mlflow_nlsr.pipeline.scorers.base import FactorContext, ModuleContext, Scorer


class WeightLowRankScorer(Scorer):
    """Entries of the reference update's top-k singular subspace (k = kept rank, D2)."""

    summary = "rank-k reconstruction of the reference update; data-free"
    uses_kept_rank = True

    def factor_mask(self, key: str, reference: torch.Tensor, ctx: FactorContext) -> torch.Tensor:
        """Top entries of the exact rank-k SVD reconstruction of the factor."""
        options = ctx.options
        keep = core.kept_rank(min(reference.shape), options.sparsity, options.variant)
        return core.weight_lowrank_mask(reference, options.sparsity, keep, per=ctx.per)

    def full_scores(self, key: str, delta_e: torch.Tensor, ctx: ModuleContext) -> torch.Tensor:
        """Seeded randomised-SVD rank-k reconstruction of ΔW_e (seconds on a 14336×4096 matrix)."""
        k = kept_rank_for(tuple(delta_e.shape), ctx.options, ctx.rank_cap)
        return lowrank_scores(delta_e, k, module_seed(ctx.options.seed, key))
