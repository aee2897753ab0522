"""Transplant: masked entries take the reference value, the others keep the fine-tuned one (spec §1.6)."""

from __future__ import annotations

import pytest
import torch

from mlflow_nlsr.core.factors import ModuleFactors
from mlflow_nlsr.core.transplant import (
    paper_correction_factors,
    row_mask,
    transplant_delta,
    transplant_factors,
)
from mlflow_nlsr.errors import ConfigError, IncompatibleModelsError
from tests.core.factors import lora_module


@pytest.fixture
def module():
    return lora_module(seed=21, r=3, d_in=8, d_out=5, threshold=0.7)


def test_masked_entries_equal_reference_and_unmasked_equal_fine_tuned(module):
    a_t, b_t, a_e, b_e, m_a, m_b = module
    a_new, b_new = transplant_factors(ModuleFactors(*module))
    assert torch.equal(a_new[m_a], a_e[m_a]) and torch.equal(a_new[~m_a], a_t[~m_a])
    assert torch.equal(b_new[m_b], b_e[m_b]) and torch.equal(b_new[~m_b], b_t[~m_b])


def test_transplant_matches_the_inner_py_update(module):
    a_t, b_t, a_e, b_e, m_a, m_b = module
    a_new, b_new = transplant_factors(ModuleFactors(*module))
    assert torch.equal(a_new, a_t * ~m_a + a_e * m_a)  # param * ~mask + (ref * mask)
    assert torch.equal(b_new, b_t * ~m_b + b_e * m_b)


def test_transplant_keeps_the_fine_tuned_dtype_and_leaves_inputs_untouched(module):
    a_t, b_t, a_e, b_e, m_a, m_b = module
    a_before = a_t.clone()
    bf16 = ModuleFactors(a_t.to(torch.bfloat16), b_t.to(torch.bfloat16), a_e, b_e, m_a, m_b)
    a_new, b_new = transplant_factors(bf16)
    assert a_new.dtype == b_new.dtype == torch.bfloat16
    transplant_factors(ModuleFactors(*module))
    assert torch.equal(a_t, a_before)


def test_paper_correction_product_equals_w_e_prime_plus_w_t_hat(module):
    a_t, b_t, a_e, b_e, m_a, m_b = (t.double() for t in module)
    a2, b2 = paper_correction_factors(ModuleFactors(a_t, b_t, a_e, b_e, m_a.bool(), m_b.bool()))
    assert a2.shape == (6, 8) and b2.shape == (5, 6)
    w_e = (m_b * b_e) @ (m_a * a_e)
    w_t_hat = ((1 - m_b) * b_t) @ ((1 - m_a) * a_t)
    torch.testing.assert_close(b2 @ a2, w_e + w_t_hat)


def test_paper_and_code_corrections_differ_by_the_cross_terms(module):
    a_t, b_t, a_e, b_e, m_a, m_b = (t.double() for t in module)
    a_c, b_c = transplant_factors(ModuleFactors(a_t, b_t, a_e, b_e, m_a.bool(), m_b.bool()))
    a_p, b_p = paper_correction_factors(ModuleFactors(a_t, b_t, a_e, b_e, m_a.bool(), m_b.bool()))
    cross = (m_b * b_e) @ ((1 - m_a) * a_t) + ((1 - m_b) * b_t) @ (m_a * a_e)
    torch.testing.assert_close(b_c @ a_c - b_p @ a_p, cross)


def test_full_masks_give_the_reference_and_empty_masks_the_fine_tuned(module):
    a_t, b_t, a_e, b_e, m_a, m_b = module
    ones_a, ones_b = torch.ones_like(m_a), torch.ones_like(m_b)
    a_new, b_new = transplant_factors(ModuleFactors(a_t, b_t, a_e, b_e, ones_a, ones_b))
    assert torch.equal(a_new, a_e) and torch.equal(b_new, b_e)
    a2, b2 = paper_correction_factors(ModuleFactors(a_t, b_t, a_e, b_e, ~ones_a, ~ones_b))
    torch.testing.assert_close(b2 @ a2, b_t @ a_t)


def test_transplant_rejects_mismatched_shapes(module):
    a_t, b_t, a_e, b_e, m_a, m_b = module
    with pytest.raises(IncompatibleModelsError):
        transplant_factors(ModuleFactors(a_t, b_t, a_e[:2], b_e, m_a, m_b))
    with pytest.raises(IncompatibleModelsError):
        paper_correction_factors(ModuleFactors(a_t, b_t, a_e, b_e, m_a, m_b.T))


def test_transplant_delta_writes_the_reference_weight_where_masked():
    g = torch.Generator().manual_seed(22)
    w_0 = torch.randn(4, 5, generator=g)
    w_t = w_0 + 0.1 * torch.randn(4, 5, generator=g)
    delta_e = torch.randn(4, 5, generator=g)
    mask = torch.rand(4, 5, generator=g) > 0.5
    out = transplant_delta(w_t, w_0, delta_e, mask)
    assert torch.equal(out[~mask], w_t[~mask])
    torch.testing.assert_close(out[mask], (w_0 + delta_e)[mask])
    assert transplant_delta(w_t.half(), w_0, delta_e, mask).dtype == torch.float16


def test_row_mask_keeps_whole_rows_with_the_largest_score_norm():
    scores = torch.tensor([[3.0, 0.0], [0.1, 0.1], [1.0, 1.0], [0.0, -2.0]])
    # row norms 3, 0.14, 1.41, 2; keep 4 - int(0.5*4) = 2 rows -> rows 0 and 3
    expected = torch.tensor([[True, True], [False, False], [False, False], [True, True]])
    assert torch.equal(row_mask(scores, 0.5), expected)
    assert int(row_mask(scores, 0.0).all(dim=1).sum()) == 4
    with pytest.raises(ConfigError):
        row_mask(scores, 1.0)
