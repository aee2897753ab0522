"""Patch strength: how much a realignment changed the fine-tuned update (for auto-calibration).

feasibility.md "What mattered" #1: the effect is governed by the patch magnitude (how far the entries
move and how many of them: amplification, kept fraction, modules patched). ``PatchStrength`` measures
it deterministically: the number of entries
changed and ‖ΔW_new − ΔW_t‖_F / ‖ΔW_t‖_F over all modules (root of summed squares).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch

from mlflow_nlsr.core._checks import check_lora_pair, check_matrix, check_same_shape
from mlflow_nlsr.core.similarity import product_inner
from mlflow_nlsr.errors import IncompatibleModelsError

ChangePart = tuple[int, int, float, float]


@dataclass(frozen=True)
class PatchStrength:
    """Entries changed, entries considered, and relative Frobenius change of the update."""

    entries_changed: int
    entries_total: int
    relative_change: float

    @property
    def changed_fraction(self) -> float:
        """entries_changed / entries_total (0.0 when there are no entries)."""
        return self.entries_changed / self.entries_total if self.entries_total else 0.0


def _sq_norm(b: torch.Tensor, a: torch.Tensor) -> float:
    return max(0.0, product_inner(b, a, b, a))


def factor_change(
    a_t: torch.Tensor, b_t: torch.Tensor, a_new: torch.Tensor, b_new: torch.Tensor
) -> ChangePart:
    """Change of one LoRA module's update (feasibility.md "What mattered" #1).

    Args:
        a_t: fine-tuned lora_A [r, d_in].
        b_t: fine-tuned lora_B [d_out, r].
        a_new: patched lora_A, [r, d_in] (code transplant) or [2r, d_in] (paper correction, D5).
        b_new: patched lora_B, [d_out, r] or [d_out, 2r].

    Returns:
        ``(entries_changed, entries_total, ‖B_new A_new − B_t A_t‖²_F, ‖B_t A_t‖²_F)``. entries_total is
        ``numel(A_t) + numel(B_t)``; entries_changed counts differing entries of A and B, or for rank-2r
        paper factors the fine-tuned entries that were dropped (second block differs from A_t / B_t).
        The LoRA scale is left out (it cancels in the ratio).

    """
    check_lora_pair(a_t, b_t, "fine-tuned")
    check_lora_pair(a_new, b_new, "patched")
    r = a_t.shape[0]
    if a_new.shape[1] != a_t.shape[1] or b_new.shape[0] != b_t.shape[0] or a_new.shape[0] not in (r, 2 * r):
        raise IncompatibleModelsError(
            f"patched factors A {tuple(a_new.shape)}, B {tuple(b_new.shape)} must have rank r or 2r of the "
            f"fine-tuned A {tuple(a_t.shape)}, B {tuple(b_t.shape)}"
        )
    total = a_t.numel() + b_t.numel()
    a_new, b_new = a_new.to(a_t.device), b_new.to(a_t.device)
    at, bt = a_t.detach().to(torch.float64), b_t.detach().to(torch.float64)
    an, bn = a_new.detach().to(torch.float64), b_new.detach().to(torch.float64)
    if a_new.shape[0] == r:
        changed = int((an != at).sum()) + int((bn != bt).sum())
        # B_n A_n − B_t A_t = (B_n − B_t) A_n + B_t (A_n − A_t): exactly zero when nothing changed.
        diff_b = torch.cat([bn - bt, bt], dim=1)
        diff_a = torch.cat([an, an - at], dim=0)
    else:
        changed = int((an[r:] != at).sum()) + int((bn[:, r:] != bt).sum())
        diff_b = torch.cat([bn, -bt], dim=1)
        diff_a = torch.cat([an, at], dim=0)
    return changed, total, _sq_norm(diff_b, diff_a), _sq_norm(bt, at)


def delta_change(w_t: torch.Tensor, w_new: torch.Tensor, w_0: torch.Tensor) -> ChangePart:
    """Dense analogue of ``factor_change`` for full-weight mode.

    Args:
        w_t: fine-tuned weight [d_out, d_in].
        w_new: patched weight [d_out, d_in].
        w_0: weight the update is relative to [d_out, d_in].

    Returns:
        ``(entries_changed, numel, ‖W_new − W_t‖²_F, ‖W_t − W_0‖²_F)`` (float64 math).

    """
    check_matrix(w_t, "w_t")
    check_same_shape(w_new, w_t, "patched vs fine-tuned weight")
    check_same_shape(w_0, w_t, "base vs fine-tuned weight")
    wt = w_t.detach().to(torch.float64)
    wn = w_new.detach().to(device=w_t.device, dtype=torch.float64)
    w0 = w_0.detach().to(device=w_t.device, dtype=torch.float64)
    changed = int((wn != wt).sum())
    return changed, w_t.numel(), float(((wn - wt) ** 2).sum()), float(((wt - w0) ** 2).sum())


def combine_strength(parts: Iterable[ChangePart]) -> PatchStrength:
    """Sum per-module parts into one ``PatchStrength``.

    Args:
        parts: tuples from ``factor_change`` / ``delta_change``.

    Returns:
        PatchStrength with summed counts and relative_change = sqrt(Σ change²) / sqrt(Σ update²);
        0.0 when nothing changed, ``inf`` when the fine-tuned update is zero but something changed.

    """
    changed = total = 0
    num = den = 0.0
    for c, t, n, d in parts:
        changed, total, num, den = changed + int(c), total + int(t), num + float(n), den + float(d)
    if num == 0.0:
        rel = 0.0
    elif den == 0.0:
        rel = math.inf
    else:
        rel = math.sqrt(num / den)
    return PatchStrength(changed, total, rel)
