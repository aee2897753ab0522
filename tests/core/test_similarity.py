"""S_j is the cosine of the mask-restricted LoRA products (spec §1.5), computed without forming them."""

from __future__ import annotations

import pytest
import torch

from mlflow_nlsr.core.factors import ModuleFactors
from mlflow_nlsr.core.similarity import (
    cosine,
    delta_similarity,
    factor_similarity,
    product_cosine,
    product_inner,
)
from mlflow_nlsr.errors import IncompatibleModelsError
from tests.core.factors import lora_module


@pytest.fixture
def module():
    return lora_module(seed=11, r=4, d_in=7, d_out=6, threshold=0.5)


def test_cosine_of_known_vectors():
    assert cosine(torch.tensor([1.0, 0.0]), torch.tensor([1.0, 1.0])) == pytest.approx(2**-0.5)
    assert cosine(torch.tensor([1.0, 2.0]), torch.tensor([-2.0, -4.0])) == pytest.approx(-1.0)
    assert cosine(torch.zeros(3), torch.ones(3)) == 0.0


def test_cosine_rejects_different_shapes():
    with pytest.raises(IncompatibleModelsError):
        cosine(torch.ones(3), torch.ones(4))


def test_factor_similarity_matches_the_inner_py_formula(module):
    a_t, b_t, a_e, b_e, m_a, m_b = (t.double() for t in module)
    f_t = (m_a * a_t).T @ (m_b * b_t).T  # [d_in, d_out], as in inner.py step 1
    f_e = (m_a * a_e).T @ (m_b * b_e).T
    expected = torch.nn.functional.cosine_similarity(f_t.flatten(), f_e.flatten(), dim=0)
    got = factor_similarity(ModuleFactors(*module))
    assert got == pytest.approx(float(expected), abs=1e-12)


def test_identical_or_rescaled_factors_have_similarity_one(module):
    a_t, b_t, _, _, m_a, m_b = module
    assert factor_similarity(ModuleFactors(a_t, b_t, a_t, b_t, m_a, m_b)) == pytest.approx(1.0)
    assert factor_similarity(ModuleFactors(a_t, b_t, 1.8 * a_t, 1.8 * b_t, m_a, m_b)) == pytest.approx(1.0)


def test_everything_masked_out_gives_zero(module):
    a_t, b_t, a_e, b_e, m_a, m_b = module
    assert factor_similarity(ModuleFactors(a_t, b_t, a_e, b_e, torch.zeros_like(m_a), m_b)) == 0.0
    assert factor_similarity(ModuleFactors(a_t, b_t, a_e, b_e, m_a, torch.zeros_like(m_b))) == 0.0


def test_factor_similarity_rejects_mismatched_shapes(module):
    a_t, b_t, a_e, b_e, m_a, m_b = module
    with pytest.raises(IncompatibleModelsError):
        factor_similarity(ModuleFactors(a_t, b_t, a_e[:, :5], b_e, m_a, m_b))
    with pytest.raises(IncompatibleModelsError):
        factor_similarity(ModuleFactors(a_t, b_t, a_e, b_e, m_a[:3], m_b))


def test_product_inner_equals_the_dense_frobenius_product():
    g = torch.Generator().manual_seed(12)
    b1, a1 = torch.randn(9, 3, generator=g), torch.randn(3, 5, generator=g)
    b2, a2 = torch.randn(9, 6, generator=g), torch.randn(6, 5, generator=g)
    dense = float(((b1 @ a1).double() * (b2 @ a2).double()).sum())
    assert product_inner(b1, a1, b2, a2) == pytest.approx(dense, rel=1e-6)
    assert product_cosine(b1, a1, b1, a1) == pytest.approx(1.0)


def test_delta_similarity_is_the_masked_dense_cosine():
    g = torch.Generator().manual_seed(13)
    d_t, d_e = torch.randn(5, 6, generator=g), torch.randn(5, 6, generator=g)
    mask = torch.rand(5, 6, generator=g) > 0.4
    expected = cosine(d_t * mask, d_e * mask)
    assert delta_similarity(d_t, d_e, mask) == pytest.approx(expected)
    assert delta_similarity(d_t, 3 * d_t, mask) == pytest.approx(1.0)
    assert delta_similarity(d_t, d_e, torch.zeros_like(mask)) == 0.0
