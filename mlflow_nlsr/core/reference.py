"""Safety reference ("super-aligned") adapter by LoRA extrapolation (spec §1.3, decision point D1).

Two variants of the ExPO-style pre-amplification:

* ``"official"`` (``src/expo-lora.py:80``): every LoRA parameter becomes ``alpha*p + alpha*p``, i.e. both
  factors are multiplied by ``2*beta``; the product ΔW is multiplied by ``(2*beta)**2`` (3.24 at 0.9).
* ``"paper"``: ``W_e = (1+beta) W_a - beta W_0``, i.e. ΔW_e = (1+beta)·ΔW_a (1.9 at 0.9), realised by
  scaling lora_B only.
"""

from __future__ import annotations

import math

import torch

from mlflow_nlsr.core._checks import check_lora_pair, check_matrix, check_variant
from mlflow_nlsr.errors import ConfigError


def _check_beta(beta: float) -> float:
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not math.isfinite(beta) or beta < 0:
        raise ConfigError(f"beta must be a finite number >= 0, found {beta!r}")
    return float(beta)


def _scaled(t: torch.Tensor, factor: float) -> torch.Tensor:
    # Multiply in at least float32 and cast back, so bf16 inputs are rounded once.
    work = t.float() if t.dtype in (torch.float16, torch.bfloat16) else t
    return (work * factor).to(t.dtype)


def amplification(variant: str, beta: float) -> float:
    """Factor the reference applies to the aligned update ΔW_a (spec §1.3, D1).

    Args:
        variant: "official" (code) or "paper".
        beta: pre-amplification coefficient β (code's ``--alpha``), >= 0.

    Returns:
        ``(2β)²`` for "official" (3.24 at β=0.9), ``1+β`` for "paper" (1.9 at β=0.9).

    """
    check_variant(variant)
    beta = _check_beta(beta)
    return (2.0 * beta) ** 2 if variant == "official" else 1.0 + beta


def extrapolate_factors(
    a: torch.Tensor, b: torch.Tensor, *, variant: str, beta: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference LoRA factors (A_e, B_e) from the aligned factors (A_a, B_a) (spec §1.3, D1).

    Args:
        a: aligned ``lora_A`` weight, shape [r, d_in].
        b: aligned ``lora_B`` weight, shape [d_out, r].
        variant: "official" multiplies both factors by ``2β`` (ΔW × (2β)²);
            "paper" returns ``(a, b·(1+β))`` so that ΔW_e = (1+β)·ΔW_a.
        beta: pre-amplification coefficient β >= 0 (default in the paper and code: 0.9).

    Returns:
        ``(A_e [r, d_in], B_e [d_out, r])``, new tensors with the dtypes of ``a`` and ``b``.

    Raises:
        ConfigError: unknown variant or invalid beta.
        IncompatibleModelsError: ``a``/``b`` are not a LoRA pair of one rank.

    """
    check_variant(variant)
    beta = _check_beta(beta)
    check_lora_pair(a, b, "extrapolate_factors")
    if variant == "official":
        return _scaled(a, 2.0 * beta), _scaled(b, 2.0 * beta)
    return a.clone(), _scaled(b, 1.0 + beta)


def extrapolate_delta(delta: torch.Tensor, *, variant: str, beta: float) -> torch.Tensor:
    """Dense reference update for full-weight mode (spec §1.3, D1).

    Args:
        delta: aligned update ΔW_a = W_a − W_0, shape [d_out, d_in].
        variant: "official" → ``(2β)²·ΔW_a``; "paper" → ``(1+β)·ΔW_a``.
        beta: pre-amplification coefficient β >= 0.

    Returns:
        ΔW_e, shape [d_out, d_in], dtype of ``delta``.

    """
    check_matrix(delta, "delta")
    return _scaled(delta, amplification(variant, beta))
