"""Neuron-level transplant of reference values into the fine-tuned weights (spec §1.6, decision point D5).

"code" (``transplant_factors``): replace the masked entries of A and B by the reference entries, as
``inner.py`` step 2 does (the product then holds cross terms such as (M_B⊙B_e)((1−M_A)⊙A_t)).
"paper" (``paper_correction_factors``): W'' = W'_e + Ŵ'_t without cross terms, returned exactly as
rank-2r factors. Full-weight mode works on dense updates instead (``transplant_delta``, ``row_mask``).
"""

from __future__ import annotations

import torch

from mlflow_nlsr.core._checks import check_mask, check_matrix, check_same_shape
from mlflow_nlsr.core.factors import ModuleFactors
from mlflow_nlsr.core.masks import top_mask


def transplant_factors(factors: ModuleFactors) -> tuple[torch.Tensor, torch.Tensor]:
    """Replace the masked factor entries by the reference ones (spec §1.6, D5 "code").

    Args:
        factors: the module's fine-tuned and reference factors and masks (``ModuleFactors``).

    Returns:
        ``(where(M_A, A_e, A_t) [r, d_in], where(M_B, B_e, B_t) [d_out, r])`` in the dtypes of a_t/b_t.

    """
    a_t, b_t, a_e, b_e, _, _ = factors
    ma, mb = factors.checked_masks()
    a_new = torch.where(ma, a_e.to(device=a_t.device, dtype=a_t.dtype), a_t)
    b_new = torch.where(mb, b_e.to(device=b_t.device, dtype=b_t.dtype), b_t)
    return a_new, b_new


def paper_correction_factors(factors: ModuleFactors) -> tuple[torch.Tensor, torch.Tensor]:
    """Paper correction W'' = W'_e + Ŵ'_t as exact rank-2r LoRA factors (spec §1.6, D5 "paper").

    W'_e = (M_B⊙B_e)(M_A⊙A_e) and Ŵ'_t = ((1−M_B)⊙B_t)((1−M_A)⊙A_t). The adapter that stores these
    factors has rank 2r: keep the LoRA scale by doubling ``lora_alpha`` together with ``r``.

    Args:
        factors: the module's fine-tuned and reference factors and masks (``ModuleFactors``).

    Returns:
        ``(A2 [2r, d_in], B2 [d_out, 2r])`` with ``A2 = [M_A⊙A_e ; (1−M_A)⊙A_t]``,
        ``B2 = [M_B⊙B_e , (1−M_B)⊙B_t]``, so ``B2 @ A2 == W'_e + Ŵ'_t``; dtypes of a_t/b_t.

    """
    a_t, b_t, a_e, b_e, _, _ = factors
    ma, mb = factors.checked_masks()
    a_e = a_e.to(device=a_t.device, dtype=a_t.dtype)
    b_e = b_e.to(device=b_t.device, dtype=b_t.dtype)
    za, zb = torch.zeros_like(a_t), torch.zeros_like(b_t)
    a2 = torch.cat([torch.where(ma, a_e, za), torch.where(ma, za, a_t)], dim=0)
    b2 = torch.cat([torch.where(mb, b_e, zb), torch.where(mb, zb, b_t)], dim=1)
    return a2, b2


def transplant_delta(
    w_t: torch.Tensor, w_0: torch.Tensor, delta_e: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Full-weight transplant: masked entries take the reference weight W_0 + ΔW_e (spec §1.6, dense).

    Args:
        w_t: fine-tuned weight [d_out, d_in].
        w_0: weight the reference update is relative to [d_out, d_in].
        delta_e: reference update ΔW_e [d_out, d_in].
        mask: bool [d_out, d_in], True = replace.

    Returns:
        ``where(mask, W_0 + ΔW_e, W_t)`` [d_out, d_in] in the dtype of ``w_t`` (math in float32).

    """
    check_matrix(w_t, "w_t")
    check_same_shape(w_0, w_t, "base vs fine-tuned weight")
    check_same_shape(delta_e, w_t, "reference update vs fine-tuned weight")
    m = check_mask(mask, w_t, "mask vs weight")
    ref = w_0.to(device=w_t.device, dtype=torch.float32) + delta_e.to(device=w_t.device, dtype=torch.float32)
    return torch.where(m, ref, w_t.float()).to(w_t.dtype)


def row_mask(entry_scores: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Output-neuron mask for full-weight mode: whole rows with the largest score norm (spec §1.4c, rows).

    Args:
        entry_scores: per-entry scores [d_out, d_in] (e.g. an ActSVD projection).
        sparsity: P_SR in [0, 1): the fraction of rows NOT kept.

    Returns:
        Bool [d_out, d_in]: the top ``d_out − int(P_SR·d_out)`` rows by L2 norm of their scores are all
        True (ties in ``torch.topk`` order), every other row all False.

    """
    check_matrix(entry_scores, "entry_scores")
    norms = torch.linalg.vector_norm(entry_scores.detach().to(torch.float64), dim=1)
    keep = top_mask(norms.unsqueeze(0), sparsity, per="row")[0]
    return keep.unsqueeze(1).expand(entry_scores.shape).clone()
