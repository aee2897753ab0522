"""Masks mark exactly the entries the spec selects: kept ranks, ActSVD projection, top-k per matrix/row."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mlflow_nlsr.core.masks import (
    actsvd_project,
    actsvd_subspace,
    input_gram,
    kept_rank,
    magnitude_mask,
    project_onto,
    random_mask_like,
    top_mask,
    weight_lowrank_mask,
)
from mlflow_nlsr.errors import CalibrationError, ConfigError, InputError


@pytest.mark.parametrize(
    "dim,sparsity,variant,expected",
    [(128, 0.8, "official", 102), (8, 0.8, "official", 6), (128, 0.8, "paper", 26), (8, 0.8, "paper", 2)],
)
def test_kept_rank_follows_d2(dim, sparsity, variant, expected):
    assert kept_rank(dim, sparsity, variant) == expected


def test_kept_rank_never_drops_to_zero():
    assert kept_rank(4, 0.1, "official") == 1  # int(0.4) == 0 would project everything away
    assert kept_rank(4, 0.99, "paper") == 1


def test_kept_rank_rejects_bad_inputs():
    with pytest.raises(ConfigError):
        kept_rank(128, 1.0, "official")
    with pytest.raises(ConfigError):
        kept_rank(0, 0.5, "official")
    with pytest.raises(ConfigError):
        kept_rank(8, 0.5, "both")


def test_input_gram_sums_over_batches_in_float64():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(10, 3, generator=g)
    total = input_gram(x[:4]) + input_gram(x[4:])
    assert total.dtype == torch.float64
    torch.testing.assert_close(total, x.double().T @ x.double())


def test_input_gram_rejects_non_finite_inputs():
    with pytest.raises(CalibrationError):
        input_gram(torch.tensor([[1.0, float("nan")]]))


def _svd_projection(w: torch.Tensor, x: torch.Tensor, k: int) -> torch.Tensor:
    y = x.double() @ w.double().T  # [T, d_out]
    _, _, vh = torch.linalg.svd(y, full_matrices=False)
    v = vh[:k].T  # top-k right singular vectors, [d_out, k]
    return v @ v.T @ w.double()


@pytest.mark.parametrize("shape,k", [((6, 10), 3), ((12, 4), 2), ((5, 7), 1), ((30, 8), 5)])
def test_actsvd_equals_projection_onto_top_right_singular_vectors_of_y(shape, k):
    g = torch.Generator().manual_seed(7)
    w = torch.randn(*shape, generator=g)
    x = torch.randn(40, shape[1], generator=g)
    projected = actsvd_project(w, input_gram(x), k)
    assert projected.shape == w.shape and projected.dtype == w.dtype
    torch.testing.assert_close(projected.double(), _svd_projection(w, x, k), atol=1e-5, rtol=1e-5)


def test_actsvd_with_full_rank_returns_the_weight():
    g = torch.Generator().manual_seed(3)
    w = torch.randn(5, 8, generator=g, dtype=torch.float64)
    x = torch.randn(30, 8, generator=g, dtype=torch.float64)
    torch.testing.assert_close(actsvd_project(w, input_gram(x), 5), w)


def test_actsvd_of_a_tall_factor_with_full_rank_returns_the_weight():
    g = torch.Generator().manual_seed(9)
    w = torch.randn(20, 4, generator=g, dtype=torch.float64)  # lora_B shape [d_out, r]
    x = torch.randn(30, 4, generator=g, dtype=torch.float64)
    torch.testing.assert_close(actsvd_project(w, input_gram(x), 4), w)


def test_actsvd_output_lies_in_the_span_of_the_activations():
    g = torch.Generator().manual_seed(4)
    w = torch.randn(6, 6, generator=g, dtype=torch.float64)
    x = torch.randn(50, 6, generator=g, dtype=torch.float64)
    x[:, 3:] = 0  # activations only use the first three input directions
    projected = actsvd_project(w, input_gram(x), 3)
    y = x @ w.T  # rank 3; the projection keeps its output subspace exactly
    torch.testing.assert_close(x @ projected.T, y)


@pytest.mark.parametrize("shape", [(6, 10), (12, 4)])
def test_actsvd_is_the_projection_onto_its_subspace_computed_once(shape):
    gen = torch.Generator().manual_seed(7)
    w, x = torch.randn(*shape, generator=gen), torch.randn(40, shape[1], generator=gen)
    v = actsvd_subspace(w, input_gram(x), 3)
    assert v.shape == (shape[0], 3) and v.dtype == torch.float64
    torch.testing.assert_close(v.T @ v, torch.eye(3, dtype=torch.float64))
    assert torch.equal(project_onto(w, v), actsvd_project(w, input_gram(x), 3))


def test_subspace_from_a_float32_gram_sum_matches_the_float64_one_on_well_separated_data():
    gen = torch.Generator().manual_seed(8)
    w, x = torch.randn(8, 16, generator=gen), torch.randn(200, 16, generator=gen) * torch.arange(1, 17)
    g32 = input_gram(x[:100], torch.float32) + input_gram(x[100:], torch.float32)
    assert g32.dtype == torch.float32
    p32, p64 = project_onto(w, actsvd_subspace(w, g32, 3)), actsvd_project(w, input_gram(x), 3)
    assert float((p32 - p64).abs().max()) < 1e-4


def test_project_onto_rejects_a_basis_of_another_output_size():
    with pytest.raises(InputError, match="basis"):
        project_onto(torch.randn(4, 3), torch.eye(5)[:, :2])


def test_actsvd_rejects_zero_calibration_and_bad_shapes():
    w = torch.ones(3, 4)
    with pytest.raises(CalibrationError, match="zero"):
        actsvd_project(w, torch.zeros(4, 4), 2)
    with pytest.raises(InputError, match="gram"):
        actsvd_project(w, torch.eye(3), 2)
    with pytest.raises(ConfigError, match="keep_rank"):
        actsvd_project(w, torch.eye(4), 4)


def test_top_mask_per_matrix_reproduces_the_official_threshold():
    scores = torch.tensor([[0.1, -0.5, 0.3], [0.9, -0.2, 0.05]])
    # sorted |s| = [0.05, 0.1, 0.2, 0.3, 0.5, 0.9]; int(0.5*6)=3 -> thresh 0.3 -> keep |s| > 0.3
    expected = torch.tensor([[False, True, False], [True, False, False]])
    assert torch.equal(top_mask(scores, 0.5), expected)
    # int(0.8*6)=4 -> thresh 0.5 -> only 0.9 survives
    assert torch.equal(top_mask(scores, 0.8), torch.tensor([[False, False, False], [True, False, False]]))


def test_top_mask_per_matrix_drops_ties_at_the_threshold_like_the_code():
    scores = torch.tensor([[1.0, 1.0, 1.0, 2.0]])
    assert top_mask(scores, 0.5).tolist() == [[False, False, False, True]]


def test_top_mask_per_row_keeps_the_same_count_in_every_row():
    scores = torch.tensor([[0.1, -0.5, 0.3], [0.9, -0.2, 0.05]])
    # 3 - int(0.5*3) = 2 per row
    expected = torch.tensor([[False, True, True], [True, True, False]])
    assert torch.equal(top_mask(scores, 0.5, per="row"), expected)


def test_top_mask_accepts_bf16_and_rejects_bad_arguments():
    scores = torch.tensor([[0.1, -0.5, 0.3], [0.9, -0.2, 0.05]])
    half = scores.to(torch.bfloat16)
    assert torch.equal(top_mask(half, 0.5), top_mask(half.float(), 0.5))
    with pytest.raises(ConfigError, match="sparsity"):
        top_mask(scores, 1.0)
    with pytest.raises(ConfigError, match="sparsity"):
        top_mask(scores, -0.1)
    with pytest.raises(ConfigError, match="per"):
        top_mask(scores, 0.5, per="column")
    with pytest.raises(InputError):
        top_mask(torch.ones(4), 0.5, per="row")


@settings(max_examples=40, deadline=None)
@given(
    rows=st.integers(1, 6),
    cols=st.integers(1, 9),
    sparsity=st.floats(0.0, 0.95),
    seed=st.integers(0, 2**16),
    quantise=st.booleans(),
)
def test_top_mask_per_matrix_keeps_at_most_the_budget_and_only_entries_above_the_rest(
    rows, cols, sparsity, seed, quantise
):
    scores = torch.randn(rows, cols, generator=torch.Generator().manual_seed(seed))
    if quantise:
        scores = scores.round()  # many ties
    mask = top_mask(scores, sparsity)
    n = scores.numel()
    assert int(mask.sum()) <= n - int(sparsity * n)
    if mask.any() and (~mask).any():
        assert scores.abs()[mask].min() > scores.abs()[~mask].max()


@settings(max_examples=40, deadline=None)
@given(rows=st.integers(1, 6), cols=st.integers(1, 9), sparsity=st.floats(0, 0.95), seed=st.integers(0, 999))
def test_top_mask_per_row_keeps_exactly_the_top_entries_of_each_row(rows, cols, sparsity, seed):
    scores = torch.randn(rows, cols, generator=torch.Generator().manual_seed(seed))  # distinct a.s.
    mask = top_mask(scores, sparsity, per="row")
    keep = cols - int(sparsity * cols)
    assert mask.sum(dim=1).tolist() == [keep] * rows
    for i in range(rows):
        kept, dropped = scores[i].abs()[mask[i]], scores[i].abs()[~mask[i]]
        if dropped.numel():
            assert kept.min() > dropped.max()


def test_magnitude_mask_is_top_mask_of_the_weight():
    w = torch.randn(8, 5, generator=torch.Generator().manual_seed(5))
    assert torch.equal(magnitude_mask(w, 0.7), top_mask(w, 0.7))
    assert torch.equal(magnitude_mask(w, 0.6, per="row"), top_mask(w, 0.6, per="row"))


def test_weight_lowrank_mask_scores_the_rank_k_reconstruction():
    g = torch.Generator().manual_seed(6)
    w = torch.randn(6, 5, generator=g)
    u, s, vh = torch.linalg.svd(w.double())
    recon = u[:, :2] @ torch.diag(s[:2]) @ vh[:2]
    assert torch.equal(weight_lowrank_mask(w, 0.8, 2), top_mask(recon, 0.8))
    # full rank reconstructs W, so the mask equals the magnitude mask
    assert torch.equal(weight_lowrank_mask(w, 0.8, 5), magnitude_mask(w, 0.8))
    with pytest.raises(ConfigError):
        weight_lowrank_mask(w, 0.8, 6)


def test_random_mask_has_the_same_budget_and_is_deterministic_per_seed():
    base = top_mask(torch.randn(16, 12, generator=torch.Generator().manual_seed(8)), 0.8)
    first = random_mask_like(base, torch.Generator().manual_seed(1))
    again = random_mask_like(base, torch.Generator().manual_seed(1))
    other = random_mask_like(base, torch.Generator().manual_seed(2))
    assert first.shape == base.shape and first.dtype == torch.bool
    assert int(first.sum()) == int(other.sum()) == int(base.sum())
    assert torch.equal(first, again)
    assert not torch.equal(first, other)
