"""``magnitude``: |reference update| (data-free, no model loaded)."""

from __future__ import annotations

import torch

from mlflow_nlsr import core
from mlflow_nlsr.options import RealignOptions
from mlflow_nlsr.pipeline.scorers.base import Evidence, Scorer


class MagnitudeScorer(Scorer):
    """The largest entries of the reference update are safety-critical."""

    summary = "largest entries of the reference update; data-free"

    def factor_mask(
        self, key: str, reference: torch.Tensor, options: RealignOptions, *, per: str, evidence: Evidence,
        generator: torch.Generator,
    ) -> torch.Tensor:  # fmt: skip
        """Top |A_e| or |B_e| entries."""
        return core.magnitude_mask(reference, options.sparsity, per=per)

    def full_scores(
        self, key: str, delta_e: torch.Tensor, options: RealignOptions, *, gram: torch.Tensor | None,
        rank_cap: int,
    ) -> torch.Tensor:  # fmt: skip
        """ΔW_e itself (its magnitude ranks the entries)."""
        return delta_e
