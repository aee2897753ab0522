"""Per-module similarity between the fine-tuned and the reference update (spec §1.5).

S_j = ⟨W'_t, W'_e⟩_F / (‖W'_t‖_F ‖W'_e‖_F) on the mask-restricted LoRA products. The LoRA scale
(alpha/r) is left out; it does not change a cosine. All math is float64. The official code computed the
products in bf16, so its S_j differ in the last digits (which only matters for near-ties in the ranking).
"""

from __future__ import annotations

import math

import torch

from mlflow_nlsr.core._checks import check_lora_pair, check_mask, check_same_shape
from mlflow_nlsr.core.factors import ModuleFactors


def cosine(x: torch.Tensor, y: torch.Tensor) -> float:
    """Cosine similarity of two tensors flattened to vectors (spec §1.5).

    Args:
        x: any shape.
        y: same shape as ``x``.

    Returns:
        ``⟨x, y⟩ / (‖x‖‖y‖)`` computed in float64; 0.0 if either norm is 0 (e.g. everything masked out).

    """
    check_same_shape(x, y, "cosine")
    xf = x.detach().to(torch.float64).flatten()
    yf = y.detach().to(device=x.device, dtype=torch.float64).flatten()
    nx, ny = float(torch.linalg.vector_norm(xf)), float(torch.linalg.vector_norm(yf))
    if nx == 0.0 or ny == 0.0:
        return 0.0
    return float(xf @ yf) / (nx * ny)


def product_inner(b1: torch.Tensor, a1: torch.Tensor, b2: torch.Tensor, a2: torch.Tensor) -> float:
    """Frobenius inner product ⟨B1·A1, B2·A2⟩_F without forming the [d_out, d_in] products.

    Uses ``⟨B1A1, B2A2⟩ = Σ (B1ᵀB2) ⊙ (A1A2ᵀ)``, which costs O(r1·r2·(d_in + d_out)).

    Args:
        b1: [d_out, r1].
        a1: [r1, d_in].
        b2: [d_out, r2].
        a2: [r2, d_in].

    Returns:
        The inner product as a Python float (float64 math).

    """
    check_lora_pair(a1, b1, "product_inner (first)")
    check_lora_pair(a2, b2, "product_inner (second)")
    dev = b1.device
    b1d, a1d = b1.detach().to(torch.float64), a1.detach().to(torch.float64)
    b2d = b2.detach().to(device=dev, dtype=torch.float64)
    a2d = a2.detach().to(device=dev, dtype=torch.float64)
    return float(((b1d.T @ b2d) * (a1d @ a2d.T)).sum())


def product_cosine(b1: torch.Tensor, a1: torch.Tensor, b2: torch.Tensor, a2: torch.Tensor) -> float:
    """Cosine of vec(B1·A1) and vec(B2·A2) without forming the products (see ``product_inner``).

    Args:
        b1: [d_out, r1].
        a1: [r1, d_in].
        b2: [d_out, r2].
        a2: [r2, d_in].

    Returns:
        The cosine in [-1, 1]; 0.0 if either product is zero.

    """
    n1 = product_inner(b1, a1, b1, a1)
    n2 = product_inner(b2, a2, b2, a2)
    if n1 <= 0.0 or n2 <= 0.0:
        return 0.0
    value = product_inner(b1, a1, b2, a2) / math.sqrt(n1 * n2)
    return max(-1.0, min(1.0, value))


def factor_similarity(factors: ModuleFactors) -> float:
    """Masked LoRA-product similarity S_j of one module (spec §1.5, ``inner.py`` step 1).

    Args:
        factors: the module's fine-tuned and reference factors and masks (``ModuleFactors``).

    Returns:
        ``cosine(vec((M_B⊙B_t)(M_A⊙A_t)), vec((M_B⊙B_e)(M_A⊙A_e)))`` in [-1, 1]; 0.0 if either masked
        product is zero (e.g. all entries masked out).

    """
    a_t, b_t, a_e, b_e, _, _ = factors
    ma, mb = factors.checked_masks()
    zero = torch.zeros((), dtype=torch.float64, device=a_t.device)
    at = torch.where(ma, a_t.to(torch.float64), zero)
    bt = torch.where(mb, b_t.to(torch.float64), zero)
    ae = torch.where(ma, a_e.to(device=a_t.device, dtype=torch.float64), zero)
    be = torch.where(mb, b_e.to(device=a_t.device, dtype=torch.float64), zero)
    return product_cosine(bt, at, be, ae)


def delta_similarity(delta_t: torch.Tensor, delta_e: torch.Tensor, mask: torch.Tensor) -> float:
    """Dense analogue of S_j for full-weight mode (spec §1.5 on ΔW instead of LoRA products).

    Args:
        delta_t: fine-tuned update W_t − W_0, shape [d_out, d_in].
        delta_e: reference update ΔW_e, shape [d_out, d_in].
        mask: bool mask, shape [d_out, d_in].

    Returns:
        ``cosine(mask⊙ΔW_t, mask⊙ΔW_e)``; 0.0 if either masked update is zero.

    """
    check_same_shape(delta_e, delta_t, "reference vs fine-tuned update")
    m = check_mask(mask, delta_t, "mask vs update")
    zero = torch.zeros((), dtype=torch.float64, device=delta_t.device)
    dt = torch.where(m, delta_t.to(torch.float64), zero)
    de = torch.where(m, delta_e.to(device=delta_t.device, dtype=torch.float64), zero)
    return cosine(dt, de)
