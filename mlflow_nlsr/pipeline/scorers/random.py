"""``random``: a uniformly random mask with the magnitude scorer's budget (control, spec §5 Table 5)."""

from __future__ import annotations

import torch

from mlflow_nlsr import core
from mlflow_nlsr.pipeline.full.scoring import module_seed
from mlflow_nlsr.pipeline.scorers.base import FactorContext, ModuleContext
from mlflow_nlsr.pipeline.scorers.magnitude import MagnitudeScorer


class RandomScorer(MagnitudeScorer):
    """Random safety-critical entries (or rows) at the same budget: does the choice of neurons matter?"""

    summary = "random entries at the same budget; a control"

    def full_mask(self, key: str, delta_e: torch.Tensor, ctx: ModuleContext) -> torch.Tensor:
        """A seeded random mask per module (seed from the run seed and the weight name)."""
        options = ctx.options
        gen = torch.Generator().manual_seed(module_seed(options.seed, key))
        d_out, d_in = tuple(delta_e.shape)
        if options.neuron == "row":
            budget = torch.zeros(d_out, dtype=torch.bool)
            budget[: d_out - int(d_out * options.sparsity)] = True
            rows = core.random_mask_like(budget, gen)
            return rows.unsqueeze(1).expand(d_out, d_in).clone().to(delta_e.device)
        budget = torch.zeros(d_out * d_in, dtype=torch.bool)
        budget[: d_out * d_in - int(d_out * d_in * options.sparsity)] = True
        return core.random_mask_like(budget, gen).reshape(d_out, d_in).to(delta_e.device)

    def factor_mask(self, key: str, reference: torch.Tensor, ctx: FactorContext) -> torch.Tensor:
        """The magnitude mask's entry count, shuffled with the run's generator."""
        return core.random_mask_like(super().factor_mask(key, reference, ctx), ctx.generator)
