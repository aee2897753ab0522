"""SafeLoRA projects B with C = V Vᵀ/‖V‖_F (official) or A with the input-side C_in (NLSR repo), spec §4."""

from __future__ import annotations

import math

import pytest
import torch

from mlflow_nlsr.core.safelora import safelora_nlsr, safelora_official, safelora_projector, select_safelora
from mlflow_nlsr.core.similarity import cosine
from mlflow_nlsr.errors import ConfigError, IncompatibleModelsError, InputError


def test_projector_and_official_projection_on_a_hand_computed_example():
    v = torch.tensor([[3.0, 0.0], [0.0, 4.0], [0.0, 0.0]])  # ‖V‖_F = 5
    c = safelora_projector(v)
    torch.testing.assert_close(c, torch.diag(torch.tensor([1.8, 3.2, 0.0])))
    b = torch.ones(3, 1)
    a = torch.tensor([[1.0, 2.0]])
    new_b, cos = safelora_official(a, b, c)
    torch.testing.assert_close(new_b, torch.tensor([[1.8], [3.2], [0.0]]))
    # <CBA, BA> = (1.8 + 3.2) * 5 = 25; ‖CBA‖² = (1.8² + 3.2²) * 5; ‖BA‖² = 15
    assert cos == pytest.approx(25 / math.sqrt((1.8**2 + 3.2**2) * 5 * 15))


def test_official_cos_matches_the_dense_formula():
    g = torch.Generator().manual_seed(31)
    v = torch.randn(6, 9, generator=g)
    a, b = torch.randn(2, 9, generator=g), torch.randn(6, 2, generator=g)
    c = safelora_projector(v)
    torch.testing.assert_close(c, v @ v.T / torch.linalg.matrix_norm(v))
    new_b, cos = safelora_official(a, b, c)
    torch.testing.assert_close(new_b, c @ b)
    assert cos == pytest.approx(cosine(c @ b @ a, b @ a), abs=1e-6)


def test_nlsr_variant_projects_a_on_the_input_side():
    g = torch.Generator().manual_seed(32)
    a, a_ref = (torch.randn(3, 7, generator=g, dtype=torch.float64) for _ in range(2))
    b, b_ref = (torch.randn(5, 3, generator=g, dtype=torch.float64) for _ in range(2))
    v = b_ref @ a_ref
    c_in = v.T @ v / torch.linalg.matrix_norm(v)  # [d_in, d_in]
    new_a, cos = safelora_nlsr(a, b, a_ref, b_ref)
    torch.testing.assert_close(new_a, a @ c_in)
    assert cos == pytest.approx(cosine(b @ a @ c_in, b @ a))


def test_projectors_reject_zero_alignment_updates_and_bad_shapes():
    with pytest.raises(InputError):
        safelora_projector(torch.zeros(3, 2))
    with pytest.raises(InputError):
        safelora_nlsr(torch.ones(2, 4), torch.ones(3, 2), torch.zeros(2, 4), torch.ones(3, 2))
    with pytest.raises(IncompatibleModelsError):
        safelora_official(torch.ones(2, 4), torch.ones(3, 2), torch.eye(4))
    with pytest.raises(IncompatibleModelsError):
        safelora_nlsr(torch.ones(2, 4), torch.ones(3, 2), torch.ones(2, 5), torch.ones(3, 2))


def test_select_by_number_takes_the_lowest_cosines():
    cos = torch.tensor([0.9, 0.2, 0.5, 0.6])
    chosen = select_safelora(cos, num_layers=2, threshold=None, strict=False)
    assert chosen.tolist() == [False, True, True, False]
    assert select_safelora(cos, num_layers=10, threshold=None, strict=False).all()


def test_select_by_number_keeps_ties_at_the_cut_like_the_official_code():
    cos = torch.tensor([0.2, 0.2, 0.5])
    assert select_safelora(cos, num_layers=1, threshold=None, strict=False).tolist() == [True, True, False]


def test_select_by_threshold_is_inclusive_unless_strict():
    cos = torch.tensor([0.9, 0.2, 0.5, 0.6])
    inclusive = select_safelora(cos, num_layers=0, threshold=0.6, strict=False)
    strict = select_safelora(cos, num_layers=None, threshold=0.6, strict=True)
    assert inclusive.tolist() == [False, True, True, True]
    assert strict.tolist() == [False, True, True, False]


def test_select_needs_a_rule():
    cos = torch.tensor([0.9, 0.2])
    with pytest.raises(ConfigError):
        select_safelora(cos, num_layers=0, threshold=None, strict=True)
    with pytest.raises(ConfigError):
        select_safelora(cos, num_layers=-1, threshold=0.5, strict=True)
