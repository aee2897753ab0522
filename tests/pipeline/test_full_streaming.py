"""Streaming scorers of full-weight mode agree with their plain counterparts in core.

The selection-based threshold equals core.top_mask; the masked-entry cosine equals core.delta_similarity; the
randomised low-rank scorer is seeded (same seed, same scores) and exact on low-rank updates.
"""

from __future__ import annotations

import pytest
import torch

from mlflow_nlsr import core
from mlflow_nlsr.options import RealignOptions
from mlflow_nlsr.pipeline.full import scoring as full_scoring
from mlflow_nlsr.pipeline.full.scoring import lowrank_scores, masked_cosine, matrix_top_mask
from mlflow_nlsr.pipeline.scorers import ModuleContext, scorer_for


def module_mask(key, delta, options, **kwargs):
    return scorer_for(options).full_mask(key, delta, ModuleContext(options, **kwargs))


@pytest.mark.parametrize("shape", [(37, 23), (400, 400)])
@pytest.mark.parametrize("sparsity", [0.0, 0.5, 0.8, 0.99])
def test_selection_threshold_equals_core_top_mask(sparsity, shape):
    scores = torch.randn(*shape, generator=torch.Generator().manual_seed(1))
    scores[0, :5] = scores[1, 0]  # ties
    assert torch.equal(matrix_top_mask(scores, sparsity), core.top_mask(scores, sparsity, per="matrix"))


def test_masked_cosine_equals_core_delta_similarity():
    gen = torch.Generator().manual_seed(2)
    d_t, d_e = torch.randn(50, 30, generator=gen), torch.randn(50, 30, generator=gen)
    mask = torch.rand(50, 30, generator=gen) > 0.7
    assert masked_cosine(d_t, d_e, mask) == pytest.approx(core.delta_similarity(d_t, d_e, mask), abs=1e-13)
    assert masked_cosine(d_t, d_e, torch.zeros_like(mask)) == 0.0


def test_lowrank_scores_are_seeded_and_exact_for_low_rank_updates():
    gen = torch.Generator().manual_seed(3)
    delta = torch.randn(60, 5, generator=gen) @ torch.randn(5, 40, generator=gen)
    first, second = lowrank_scores(delta, 5, seed=11), lowrank_scores(delta, 5, seed=11)
    assert torch.equal(first, second)
    assert torch.allclose(first, delta, atol=1e-4)
    state = torch.random.get_rng_state()
    lowrank_scores(delta, 3, seed=12)
    assert torch.equal(state, torch.random.get_rng_state())  # the global RNG is left untouched


def test_weight_lowrank_mask_matches_the_exact_svd_mask_on_a_low_rank_update():
    gen = torch.Generator().manual_seed(4)
    delta = torch.randn(64, 3, generator=gen) @ torch.randn(3, 48, generator=gen)
    options = RealignOptions(scorer="weight-lowrank", sparsity=0.8)
    mask = module_mask("w", delta, options, rank_cap=3)
    k = full_scoring.kept_rank_for((64, 48), options, rank_cap=3)
    assert k == 2  # official: int(3 * 0.8)
    exact = core.weight_lowrank_mask(delta, 0.8, k)
    assert (mask ^ exact).float().mean() < 0.005


def test_actsvd_mask_needs_the_kept_subspace_at_the_kept_rank():
    from mlflow_nlsr.errors import CalibrationError

    options = RealignOptions(scorer="actsvd")
    with pytest.raises(CalibrationError, match="subspace"):
        module_mask("w", torch.randn(8, 8), options)
    with pytest.raises(CalibrationError, match="another kept rank"):
        module_mask("w", torch.randn(8, 8), options, subspace=torch.eye(8)[:, :3])
    v = torch.linalg.qr(torch.randn(8, 6, generator=torch.Generator().manual_seed(5))).Q  # k = int(8 * 0.8)
    delta = torch.randn(8, 8)
    assert torch.equal(module_mask("w", delta, options, subspace=v),
                       core.top_mask(core.project_onto(delta, v), options.sparsity))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kth_smallest_equals_the_sorted_value_on_large_and_skewed_inputs(seed):
    from mlflow_nlsr.pipeline.full.scoring import kth_smallest

    gen = torch.Generator().manual_seed(seed)
    flat = torch.randn(300_000, generator=gen).abs()
    flat[:100_000] *= 1000  # a block with another scale: the strided sample must still bracket
    flat[200_000:200_100] = flat[5]  # ties
    ordered = flat.sort().values
    for k in (0, 1234, 150_000, 240_000, 299_999):
        assert kth_smallest(flat, k) == ordered[k]
