"""Random LoRA factors of one module (fine-tuned, reference) and random masks, for the core tests."""

from __future__ import annotations

import torch


def lora_module(
    seed: int, r: int, d_in: int, d_out: int, threshold: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(a_t [r, d_in], b_t [d_out, r], a_e, b_e, m_a, m_b): masks True where a uniform draw > threshold."""
    g = torch.Generator().manual_seed(seed)
    a_t, b_t = torch.randn(r, d_in, generator=g), torch.randn(d_out, r, generator=g)
    a_e, b_e = torch.randn(r, d_in, generator=g), torch.randn(d_out, r, generator=g)
    m_a, m_b = torch.rand(r, d_in, generator=g) > threshold, torch.rand(d_out, r, generator=g) > threshold
    return a_t, b_t, a_e, b_e, m_a, m_b
