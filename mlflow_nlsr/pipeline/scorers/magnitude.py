"""``magnitude``: |reference update| (data-free, no model loaded)."""

from __future__ import annotations

import torch

from mlflow_nlsr import core
from mlflow_nlsr.pipeline.scorers.base import FactorContext, ModuleContext, Scorer


class MagnitudeScorer(Scorer):
    """The largest entries of the reference update are safety-critical."""

    summary = "largest entries of the reference update; data-free"

    def factor_mask(self, key: str, reference: torch.Tensor, ctx: FactorContext) -> torch.Tensor:
        """Top |A_e| or |B_e| entries."""
        return core.magnitude_mask(reference, ctx.options.sparsity, per=ctx.per)

    def full_scores(self, key: str, delta_e: torch.Tensor, ctx: ModuleContext) -> torch.Tensor:
        """ΔW_e itself (its magnitude ranks the entries)."""
        return delta_e
