"""SafeLoRA, the layer-level projection baseline (spec §4, decision point D6).

Official SafeLoRA (IBM/SafeLoRA ``model.py``): C = V Vᵀ / ‖V‖_F from the full-weight alignment update V
[d_out, d_in] (not an idempotent projector); a module is projected, B ← C·B, when
cos(vec(C·B·A), vec(B·A)) <= threshold, or for the ``num_proj_layers`` lowest cosines. The official code
rounds cos to 5 decimals before comparing; the functions here return the unrounded value.

NLSR's re-implementation (``inner.py`` ``realign_type=scale``): V = B_ref·A_ref from the aligned adapter,
an input-side projector C_in = VᵀV/‖V‖_F, A ← A·C_in, and a strict comparison cos < τ (τ = 0.6).
Everything is computed in float64 from the low-rank factors, without forming [d, d] matrices where the
factors allow it.
"""

from __future__ import annotations

import math

import torch

from mlflow_nlsr.core._checks import check_lora_pair, check_matrix
from mlflow_nlsr.core.similarity import product_cosine, product_inner
from mlflow_nlsr.errors import ConfigError, IncompatibleModelsError, InputError


def safelora_projector(v: torch.Tensor) -> torch.Tensor:
    """Official SafeLoRA matrix C = V Vᵀ / ‖V‖_F (spec §4 step 1).

    Args:
        v: alignment update V = W_aligned − W_base, shape [d_out, d_in].

    Returns:
        C, shape [d_out, d_out], dtype of ``v`` (float64 math).

    Raises:
        InputError: V is zero (aligned and base weights are equal) or not finite.

    """
    check_matrix(v, "alignment update V")
    v64 = v.detach().to(torch.float64)
    norm = float(torch.linalg.matrix_norm(v64))
    if not math.isfinite(norm) or norm == 0.0:
        raise InputError(f"alignment update V must be non-zero and finite, found Frobenius norm {norm}")
    return ((v64 @ v64.T) / norm).to(v.dtype)


def safelora_official(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Official SafeLoRA projection of one module (spec §4 steps 2–3).

    Args:
        a: lora_A [r, d_in].
        b: lora_B [d_out, r].
        c: projector from ``safelora_projector``, [d_out, d_out].

    Returns:
        ``(C @ B [d_out, r] in b's dtype, cos)`` with ``cos = cosine(vec(C·B·A), vec(B·A))``; apply the new B
        only to the modules ``select_safelora`` picks.

    """
    check_lora_pair(a, b, "safelora_official")
    d_out = b.shape[0]
    if c.shape != (d_out, d_out):
        raise IncompatibleModelsError(f"projector must be [{d_out}, {d_out}], found {tuple(c.shape)}")
    b64 = b.detach().to(torch.float64)
    cb = c.detach().to(device=b.device, dtype=torch.float64) @ b64
    return cb.to(b.dtype), product_cosine(cb, a, b64, a)


def safelora_nlsr(
    a: torch.Tensor, b: torch.Tensor, a_ref: torch.Tensor, b_ref: torch.Tensor
) -> tuple[torch.Tensor, float]:
    """SafeLoRA as re-implemented in the NLSR repository (spec §4, D6).

    V = B_ref·A_ref, C_in = VᵀV/‖V‖_F [d_in, d_in]; computed as ``((A A_refᵀ)(B_refᵀ B_ref)) A_ref / ‖V‖_F``
    so C_in is never formed.

    Args:
        a: fine-tuned lora_A [r, d_in].
        b: fine-tuned lora_B [d_out, r].
        a_ref: aligned (reference) lora_A [r_ref, d_in].
        b_ref: aligned lora_B [d_out, r_ref].

    Returns:
        ``(A @ C_in [r, d_in] in a's dtype, cos)`` with ``cos = cosine(vec(B·A·C_in), vec(B·A))``.

    Raises:
        InputError: the reference product B_ref·A_ref is zero.

    """
    check_lora_pair(a, b, "fine-tuned")
    check_lora_pair(a_ref, b_ref, "reference")
    if a_ref.shape[1] != a.shape[1] or b_ref.shape[0] != b.shape[0]:
        raise IncompatibleModelsError(
            f"reference product [{b_ref.shape[0]}, {a_ref.shape[1]}] must match the module "
            f"[{b.shape[0]}, {a.shape[1]}]"
        )
    dev = a.device
    a64 = a.detach().to(torch.float64)
    ar = a_ref.detach().to(device=dev, dtype=torch.float64)
    br = b_ref.detach().to(device=dev, dtype=torch.float64)
    norm_sq = product_inner(br, ar, br, ar)
    if not math.isfinite(norm_sq) or norm_sq <= 0.0:
        raise InputError("reference update B_ref·A_ref must be non-zero and finite for SafeLoRA (NLSR)")
    a_new = ((a64 @ ar.T) @ (br.T @ br)) @ ar / math.sqrt(norm_sq)
    return a_new.to(a.dtype), product_cosine(b, a_new, b, a64)


def select_safelora(
    cos: torch.Tensor, *, num_layers: int | None, threshold: float | None, strict: bool
) -> torch.Tensor:
    """Which modules SafeLoRA projects (spec §4 step 4, D6).

    Args:
        cos: per-module cosines, float [N].
        num_layers: if > 0, the official "number" rule: threshold = the num_layers-th lowest cosine and
            every module with cos <= it is chosen (the num_layers lowest; ties at that value are all
            chosen, as in the official code). 0 or None: use ``threshold``.
        threshold: the "threshold" rule's τ (official default 0.5; NLSR repo 0.6).
        strict: compare ``cos < τ`` (NLSR repo) instead of ``cos <= τ`` (official).

    Returns:
        Bool [N] (CPU), True = project this module. Comparisons run in the dtype of ``cos``; the
        official code rounds cos to 5 decimals first, round before calling to reproduce that exactly.

    """
    if cos.dim() != 1:
        raise InputError(f"cos must be 1-D [N], found shape {tuple(cos.shape)}")
    # Compare in the caller's float dtype: a float32 0.6 must count as <= 0.6.
    c = cos.detach().cpu()
    if not c.is_floating_point():
        c = c.to(torch.float64)
    if num_layers is not None and (isinstance(num_layers, bool) or num_layers < 0):
        raise ConfigError(f"num_layers must be >= 0 or None, found {num_layers!r}")
    if num_layers:
        if c.numel() == 0:
            return torch.zeros(0, dtype=torch.bool)
        thrs = torch.sort(c).values[min(num_layers, c.numel()) - 1]
        return c <= thrs
    if threshold is None or isinstance(threshold, bool) or math.isnan(threshold):
        raise ConfigError(f"SafeLoRA needs num_layers > 0 or a numeric threshold, found {threshold!r}")
    return c < threshold if strict else c <= threshold
