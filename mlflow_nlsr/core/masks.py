"""Safety-critical neuron masks (spec §1.4, decision points D2 and D3).

A "neuron" is one scalar entry of a LoRA factor (or of a dense ΔW in full-weight mode). Scores come from
an ActSVD projection of the factor onto its top-k output-activation subspace (``actsvd_project``), from the
weight itself (``magnitude_mask``, ``weight_lowrank_mask``) or from chance (``random_mask_like``);
``top_mask`` turns scores into a boolean mask, True = safety-critical.
"""

from __future__ import annotations

import torch

from mlflow_nlsr.core._checks import check_matrix, check_sparsity, check_variant
from mlflow_nlsr.errors import CalibrationError, ConfigError, InputError

PER = ("matrix", "row")


def kept_rank(dim: int, sparsity: float, variant: str) -> int:
    """Rank kept by the low-rank projection (spec §1.4b, D2).

    Args:
        dim: ``min(d_out, d_in)`` of the factor (128 for every Llama-3 LoRA factor at r=128).
        sparsity: P_SR in [0, 1).
        variant: "official" → ``int(dim·P_SR)`` (102 for 128 at 0.8, 6 for 8);
            "paper" → ``round(dim·(1−P_SR))`` (26 for 128 at 0.8).

    Returns:
        The kept rank k, clamped to ``[1, dim]`` (the official code would fail with k = 0).

    """
    check_variant(variant)
    sparsity = check_sparsity(sparsity)
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
        raise ConfigError(f"dim must be a positive int, found {dim!r}")
    k = int(dim * sparsity) if variant == "official" else round(dim * (1.0 - sparsity))
    return min(dim, max(1, k))


def input_gram(x: torch.Tensor, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Gram matrix of a factor's calibration inputs (spec §1.4b); sum these over batches.

    Args:
        x: inputs of the factor at response tokens, shape [T, d_in] (T may be 0).
        dtype: precision of the product and of the sum the caller keeps: float64 (default, exact enough
            for any calibration set) or float32 (half the memory; full-weight mode accumulates block
            Grams in float32 on the device and decomposes them in float64, see ``actsvd_subspace``).

    Returns:
        ``XᵀX`` in `dtype`, shape [d_in, d_in], on the device of ``x``.

    Raises:
        CalibrationError: ``x`` is not 2-D or holds NaN/Inf.

    """
    if x.dim() != 2:
        raise CalibrationError(f"calibration inputs must be [T, d_in], found shape {tuple(x.shape)}")
    xd = x.detach().to(dtype)
    if not torch.isfinite(xd).all():
        raise CalibrationError("calibration inputs hold NaN or Inf values")
    return xd.T @ xd


def actsvd_project(weight: torch.Tensor, gram: torch.Tensor, keep_rank: int) -> torch.Tensor:
    """Project a factor onto the top-k subspace of its output activations (ActSVD, spec §1.4b).

    ``project_onto(weight, actsvd_subspace(weight, gram, keep_rank))``: with ``Y = X Wᵀ`` the result is
    ``Ŵ = V Vᵀ W`` for the top-k right singular vectors V of Y. The official code uses
    ``torch.svd_lowrank(Y, q=k, niter=20)``, which equals this up to its randomised approximation.

    Args:
        weight: factor weight W, shape [d_out, d_in] (lora_A: [r, d_in]; lora_B: [d_out, r]).
        gram: ``XᵀX`` of the factor's inputs, shape [d_in, d_in] (see ``input_gram``).
        keep_rank: k, 1 <= k <= d_out (see ``kept_rank``).

    Returns:
        Ŵ, shape [d_out, d_in], dtype and device of ``weight``.

    Raises:
        CalibrationError: the gram matrix is all zeros or not finite.
        InputError: shapes do not agree.
        ConfigError: keep_rank out of range.

    """
    return project_onto(weight, actsvd_subspace(weight, gram, keep_rank))


def actsvd_subspace(weight: torch.Tensor, gram: torch.Tensor, keep_rank: int) -> torch.Tensor:
    """Orthonormal basis of the top-k output-activation subspace of a factor (ActSVD, spec §1.4b).

    With ``Y = X Wᵀ`` ([T, d_out]) and ``G = XᵀX``, the top-k right singular vectors V of Y are the
    top-k eigenvectors of ``YᵀY = W G Wᵀ``, computed exactly with ``torch.linalg.eigh`` in float64
    (deterministic) whatever the dtype of ``gram``. For tall factors (d_out > d_in, e.g. lora_B) the same
    vectors come from the SVD of ``W L`` with ``G = L Lᵀ``, which costs O(d_out·d_in²) instead of
    O(d_out³). If eigenvalue k and k+1 tie, the subspace is not unique and either choice is valid.
    V is all a scorer needs from G for this weight: [d_out, k] instead of [d_in, d_in].

    Args:
        weight: factor weight W, shape [d_out, d_in].
        gram: ``XᵀX`` of the factor's inputs, shape [d_in, d_in], float32 or float64.
        keep_rank: k, 1 <= k <= d_out (see ``kept_rank``).

    Returns:
        V, shape [d_out, k], float64, on the device of ``weight``, orthonormal columns.

    Raises:
        CalibrationError: the gram matrix is all zeros or not finite.
        InputError: shapes do not agree.
        ConfigError: keep_rank out of range.

    """
    check_matrix(weight, "weight")
    d_out, d_in = weight.shape
    if gram.shape != (d_in, d_in):
        raise InputError(f"gram must be [d_in, d_in] = [{d_in}, {d_in}], found {tuple(gram.shape)}")
    if isinstance(keep_rank, bool) or not isinstance(keep_rank, int) or not 1 <= keep_rank <= d_out:
        raise ConfigError(f"keep_rank must be an int in [1, {d_out}], found {keep_rank!r}")
    g = gram.detach().to(device=weight.device, dtype=torch.float64)
    if not torch.isfinite(g).all():
        raise CalibrationError("calibration gram matrix holds NaN or Inf values")
    if not bool((g != 0).any()):
        raise CalibrationError("calibration gram matrix is zero: no calibration tokens reached this factor")
    w = weight.detach().to(torch.float64)
    if d_out <= d_in or keep_rank > d_in:
        m = w @ g @ w.T
        m = (m + m.T) / 2  # symmetric up to rounding; eigh reads one triangle
        _, vecs = torch.linalg.eigh(m)  # ascending eigenvalues
        return vecs[:, -keep_rank:]
    # Tall factor (lora_B: d_out up to 14336, d_in = r): the same subspace from the small side.
    # G = L Lᵀ, so W G Wᵀ = Z Zᵀ with Z = W L [d_out, d_in]; its top eigenvectors are Z's top
    # left singular vectors. Avoids an O(d_out³) eigendecomposition.
    evals, q = torch.linalg.eigh((g + g.T) / 2)
    z = w @ (q * evals.clamp(min=0).sqrt())
    u, _, _ = torch.linalg.svd(z, full_matrices=False)
    return u[:, :keep_rank]


def project_onto(weight: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """Project the columns of a weight onto a subspace of its output space: ``V Vᵀ W``.

    Args:
        weight: W, shape [d_out, d_in].
        basis: V with orthonormal columns, shape [d_out, k] (see ``actsvd_subspace``).

    Returns:
        ``V Vᵀ W`` computed in float64, shape [d_out, d_in], dtype and device of ``weight``.

    Raises:
        InputError: ``basis`` is not [d_out, k].

    """
    check_matrix(weight, "weight")
    if basis.dim() != 2 or basis.shape[0] != weight.shape[0]:
        raise InputError(f"basis must be [d_out, k] with d_out = {weight.shape[0]}, "
                         f"found {tuple(basis.shape)}")
    v = basis.detach().to(device=weight.device, dtype=torch.float64)
    return (v @ (v.T @ weight.detach().to(torch.float64))).to(weight.dtype)


def _check_per(per: str) -> None:
    if per not in PER:
        raise ConfigError(f"per must be one of {PER}, found {per!r}")


def top_mask(scores: torch.Tensor, sparsity: float, *, per: str = "matrix") -> torch.Tensor:
    """Mark the highest-|score| entries as safety-critical (spec §1.4c, D3).

    Args:
        scores: scores, any shape for per="matrix", shape [rows, cols] for per="row".
        sparsity: P_SR in [0, 1): the fraction NOT kept.
        per: "matrix" reproduces the official code exactly: ``thresh = sort(|s|.flatten())[int(P_SR·n)]``,
            ``mask = |s| > thresh`` (so ties at the threshold are dropped and at most
            ``n − int(P_SR·n)`` entries are kept); "row" (paper) keeps, in every row, the top
            ``cols − int(P_SR·cols)`` entries by |score| (ties in ``torch.topk`` order).

    Returns:
        Bool mask with the shape and device of ``scores``.

    """
    sparsity = check_sparsity(sparsity)
    _check_per(per)
    if scores.numel() == 0:
        raise InputError("scores must not be empty")
    s = scores.detach().abs()
    if s.dtype in (torch.float16, torch.bfloat16):
        s = s.float()  # exact conversion; same order and comparisons
    if per == "matrix":
        flat = s.flatten()
        thresh = torch.sort(flat).values[int(flat.numel() * sparsity)]
        return s > thresh
    check_matrix(scores, "scores (per='row')")
    cols = s.shape[1]
    k = cols - int(cols * sparsity)
    idx = torch.topk(s, k, dim=1).indices
    mask = torch.zeros(s.shape, dtype=torch.bool, device=s.device)
    return mask.scatter_(1, idx, True)


def magnitude_mask(weight: torch.Tensor, sparsity: float, *, per: str = "matrix") -> torch.Tensor:
    """Data-free mask: the largest-|W| entries (spec §1.4c with |W| as score; Table 5 style control).

    Args:
        weight: factor or dense update, shape [d_out, d_in].
        sparsity: P_SR in [0, 1).
        per: "matrix" or "row" (see ``top_mask``).

    Returns:
        Bool mask, shape [d_out, d_in].

    """
    return top_mask(weight, sparsity, per=per)


def weight_lowrank_mask(
    weight: torch.Tensor, sparsity: float, keep_rank: int, *, per: str = "matrix"
) -> torch.Tensor:
    """Data-free low-rank mask: top entries of the rank-k SVD reconstruction of W (spec §1.4b–c, no X).

    Args:
        weight: factor or dense update, shape [d_out, d_in].
        sparsity: P_SR in [0, 1).
        keep_rank: k, 1 <= k <= min(d_out, d_in).
        per: "matrix" or "row" (see ``top_mask``).

    Returns:
        Bool mask, shape [d_out, d_in] (deterministic: ``torch.linalg.svd`` in float64).

    """
    check_matrix(weight, "weight")
    full = min(weight.shape)
    if isinstance(keep_rank, bool) or not isinstance(keep_rank, int) or not 1 <= keep_rank <= full:
        raise ConfigError(f"keep_rank must be an int in [1, {full}], found {keep_rank!r}")
    u, s, vh = torch.linalg.svd(weight.detach().to(torch.float64), full_matrices=False)
    recon = (u[:, :keep_rank] * s[:keep_rank]) @ vh[:keep_rank]
    return top_mask(recon, sparsity, per=per)


def random_mask_like(mask: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random control mask with exactly as many True entries as ``mask`` (spec §5, Table 5 "Random").

    Args:
        mask: reference bool mask, any shape.
        generator: a seeded CPU ``torch.Generator`` (the only randomness source).

    Returns:
        Bool mask with the shape and device of ``mask`` and ``mask.sum()`` True entries, uniformly placed.

    """
    count = int(mask.to(torch.bool).sum())
    perm = torch.randperm(mask.numel(), generator=generator, device="cpu")
    out = torch.zeros(mask.numel(), dtype=torch.bool)
    out[perm[:count]] = True
    return out.reshape(mask.shape).to(mask.device)
