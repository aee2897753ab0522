"""Patch strength counts changed entries and the relative Frobenius change of ΔW; zero if unchanged."""

from __future__ import annotations

import math

import pytest
import torch

from mlflow_nlsr.core.factors import ModuleFactors
from mlflow_nlsr.core.strength import PatchStrength, combine_strength, delta_change, factor_change
from mlflow_nlsr.core.transplant import paper_correction_factors, transplant_factors
from mlflow_nlsr.errors import IncompatibleModelsError


@pytest.fixture
def module():
    g = torch.Generator().manual_seed(41)
    a_t, a_e = (torch.randn(3, 6, generator=g, dtype=torch.float64) for _ in range(2))
    b_t, b_e = (torch.randn(4, 3, generator=g, dtype=torch.float64) for _ in range(2))
    m_a, m_b = torch.rand(3, 6, generator=g) > 0.6, torch.rand(4, 3, generator=g) > 0.6
    return a_t, b_t, a_e, b_e, m_a, m_b


def test_strength_is_zero_when_nothing_changes(module):
    a_t, b_t, *_ = module
    part = factor_change(a_t, b_t, a_t.clone(), b_t.clone())
    assert part[0] == 0 and part[1] == 30 and part[2] == 0.0 and part[3] > 0
    strength = combine_strength([part])
    assert strength == PatchStrength(0, 30, 0.0)
    assert strength.changed_fraction == 0.0


def test_code_transplant_strength_matches_the_dense_change(module):
    a_t, b_t, a_e, b_e, m_a, m_b = module
    a_new, b_new = transplant_factors(ModuleFactors(*module))
    changed, total, num, den = factor_change(a_t, b_t, a_new, b_new)
    assert changed == int(m_a.sum() + m_b.sum()) and total == 30
    assert num == pytest.approx(float(((b_new @ a_new - b_t @ a_t) ** 2).sum()))
    assert den == pytest.approx(float(((b_t @ a_t) ** 2).sum()))
    rel = combine_strength([(changed, total, num, den)]).relative_change
    expected = torch.linalg.matrix_norm(b_new @ a_new - b_t @ a_t) / torch.linalg.matrix_norm(b_t @ a_t)
    assert rel == pytest.approx(float(expected))


def test_paper_correction_strength_counts_dropped_fine_tuned_entries(module):
    a_t, b_t, a_e, b_e, m_a, m_b = module
    a2, b2 = paper_correction_factors(ModuleFactors(*module))
    changed, total, num, _ = factor_change(a_t, b_t, a2, b2)
    assert changed == int(m_a.sum() + m_b.sum()) and total == 30
    assert num == pytest.approx(float(((b2 @ a2 - b_t @ a_t) ** 2).sum()))


def test_factor_change_rejects_other_ranks(module):
    a_t, b_t, *_ = module
    with pytest.raises(IncompatibleModelsError):
        factor_change(a_t, b_t, a_t[:2], b_t[:, :2])


def test_delta_change_and_combination_over_modules():
    w_0 = torch.zeros(2, 2)
    w_t = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    w_new = torch.tensor([[1.0, 3.0], [0.0, 2.0]])
    part = delta_change(w_t, w_new, w_0)
    assert part == (1, 4, 9.0, 5.0)
    same = delta_change(w_t, w_t.clone(), w_0)
    assert same == (0, 4, 0.0, 5.0)
    combined = combine_strength([part, same])
    assert combined.entries_changed == 1 and combined.entries_total == 8
    assert combined.relative_change == pytest.approx(math.sqrt(9.0 / 10.0))
    assert combined.changed_fraction == pytest.approx(1 / 8)


def test_combine_edge_cases():
    assert combine_strength([]) == PatchStrength(0, 0, 0.0)
    assert combine_strength([(1, 4, 2.0, 0.0)]).relative_change == math.inf
