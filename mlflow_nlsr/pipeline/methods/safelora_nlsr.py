"""SafeLoRA as the NLSR repository re-implemented it: input-side projector, A <- A C_in (spec §4, D6)."""

from __future__ import annotations

import torch

from mlflow_nlsr import core
from mlflow_nlsr.options import RealignOptions
from mlflow_nlsr.pipeline.methods.safelora import Factors, SafeLoRA

NLSR_SAFELORA_TAU = 0.6  # the NLSR repository's SafeLoRA runs (spec §4)


class SafeLoRANLSR(SafeLoRA):
    """SafeLoRA with C_in = VᵀV/‖V‖_F on lora_A where cosine < tau (the NLSR repository's baseline)."""

    summary = "SafeLoRA as the NLSR repository re-implemented it, a baseline"
    projected_factor = "A"

    def project(self, tuned: Factors, aligned: Factors, scaling: float) -> tuple[torch.Tensor, float]:
        """The new A (= A C_in) of one module and the cosine of the projected update."""
        return core.safelora_nlsr(*tuned, *aligned)

    def choose(self, cosines: torch.Tensor, options: RealignOptions) -> tuple[torch.Tensor, float, str]:
        """Every module with cosine < tau (default 0.6)."""
        tau = options.tau if options.tau is not None else NLSR_SAFELORA_TAU
        chosen = core.select_safelora(cosines, num_layers=0, threshold=tau, strict=True)
        decision = f"NLSR-repo SafeLoRA: input-side C_in = V^T V/||V||_F, A <- A C_in where cos < {tau}"
        return chosen, tau, decision
