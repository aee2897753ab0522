"""The reference adapter amplifies ΔW by (2β)² in the official variant and by (1+β) in the paper variant."""

from __future__ import annotations

import pytest
import torch

from mlflow_nlsr.core.reference import amplification, extrapolate_delta, extrapolate_factors
from mlflow_nlsr.errors import ConfigError, IncompatibleModelsError


@pytest.fixture
def lora():
    g = torch.Generator().manual_seed(0)
    return torch.randn(4, 6, generator=g), torch.randn(5, 4, generator=g)


def test_official_scales_each_factor_by_two_beta_and_the_product_by_3_24(lora):
    a, b = lora
    a_e, b_e = extrapolate_factors(a, b, variant="official", beta=0.9)
    torch.testing.assert_close(a_e, 1.8 * a)
    torch.testing.assert_close(b_e, 1.8 * b)
    torch.testing.assert_close(b_e @ a_e, 3.24 * (b @ a))


def test_paper_scales_only_b_so_the_product_grows_by_1_9(lora):
    a, b = lora
    a_e, b_e = extrapolate_factors(a, b, variant="paper", beta=0.9)
    torch.testing.assert_close(a_e, a)
    torch.testing.assert_close(b_e @ a_e, 1.9 * (b @ a))
    assert a_e.data_ptr() != a.data_ptr()  # a copy, not an alias of the input


def test_amplification_reports_the_factor_applied_to_delta():
    assert amplification("official", 0.9) == pytest.approx(3.24)
    assert amplification("paper", 0.9) == pytest.approx(1.9)
    assert amplification("official", 0.5) == pytest.approx(1.0)


@pytest.mark.parametrize("variant,factor", [("official", 3.24), ("paper", 1.9)])
def test_dense_extrapolation_matches_the_factor_product(lora, variant, factor):
    a, b = lora
    delta = b @ a
    torch.testing.assert_close(extrapolate_delta(delta, variant=variant, beta=0.9), factor * delta)
    a_e, b_e = extrapolate_factors(a, b, variant=variant, beta=0.9)
    torch.testing.assert_close(extrapolate_delta(delta, variant=variant, beta=0.9), b_e @ a_e)


def test_bf16_inputs_keep_their_dtype(lora):
    a, b = (t.to(torch.bfloat16) for t in lora)
    a_e, b_e = extrapolate_factors(a, b, variant="official", beta=0.9)
    assert a_e.dtype == b_e.dtype == torch.bfloat16


def test_unknown_variant_or_bad_beta_is_a_config_error(lora):
    a, b = lora
    with pytest.raises(ConfigError, match="variant"):
        extrapolate_factors(a, b, variant="expo", beta=0.9)
    with pytest.raises(ConfigError, match="beta"):
        extrapolate_factors(a, b, variant="paper", beta=-1.0)
    with pytest.raises(ConfigError, match="beta"):
        amplification("paper", float("nan"))


def test_mismatched_factor_ranks_are_rejected(lora):
    a, b = lora
    with pytest.raises(IncompatibleModelsError, match="share r"):
        extrapolate_factors(a, b[:, :3], variant="official", beta=0.9)
