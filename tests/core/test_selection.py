"""Module selection reproduces inner.py's rank-based Bernoulli draw, its paper reversal and fixed rules."""

from __future__ import annotations

import pytest
import torch

from mlflow_nlsr.core.selection import ModuleSelection, rank_probabilities, select_modules
from mlflow_nlsr.errors import ConfigError, InputError


def reference_draw(similarity, prune_rate, eps, seed, reverse=False):
    """Spec §1.5 pseudo-code, written out by hand (python lists, stable sort)."""
    n = len(similarity)
    order = sorted(range(n), key=lambda i: -similarity[i])  # argsort descending, stable
    rank = [0.0] * n
    for pos, i in enumerate(order):
        rank[i] = float(n + 1 - pos)  # rank[order] = [N+1, N, ..., 2]
    lo, hi = min(rank), max(rank)
    u = [(r - lo) / (hi - lo) for r in rank]
    if reverse:
        u = [1 - x for x in u]
    p = [min(1.0, max(0.0, (prune_rate - eps) + x * 2 * eps)) for x in u]
    g = torch.bernoulli(torch.tensor(p, dtype=torch.float64), generator=torch.Generator().manual_seed(seed))
    return [bool(x == 1) for x in g], p


def test_official_probabilities_rise_with_similarity():
    sim = torch.tensor([0.95, 0.97, 0.93])
    # ranks [3, 4, 2] -> u [0.5, 1, 0] -> P = 0.3 + 0.4u
    probs = rank_probabilities(sim, layer_rate=0.5, epsilon=0.2)
    torch.testing.assert_close(probs, torch.tensor([0.5, 0.7, 0.3], dtype=torch.float64))


@pytest.mark.parametrize("seed", [0, 1, 42, 1234])
def test_official_draw_matches_the_hand_written_reference(seed):
    sim = [0.95, 0.97, 0.93]
    expected, p = reference_draw(sim, 0.5, 0.2, seed)
    got = select_modules(torch.tensor(sim), mode="official", seed=seed)
    assert isinstance(got, ModuleSelection) and got.mode == "official"
    assert got.patched.tolist() == expected
    assert got.probability is not None
    torch.testing.assert_close(got.probability, torch.tensor(p, dtype=torch.float64))


@pytest.mark.parametrize("seed", [0, 7, 42])
def test_paper_mode_reverses_the_ranking(seed):
    sim = [0.95, 0.97, 0.93]
    expected, p = reference_draw(sim, 0.5, 0.2, seed, reverse=True)
    got = select_modules(torch.tensor(sim), mode="paper", seed=seed)
    assert got.patched.tolist() == expected
    assert p == pytest.approx([0.5, 0.3, 0.7])


def test_a_larger_module_set_matches_the_reference_with_ties():
    sim = torch.tensor([0.5, 0.2, 0.5, 0.9, 0.1, 0.2, 0.7])
    expected, p = reference_draw(sim.tolist(), 0.4, 0.3, 42)
    got = select_modules(sim, mode="official", layer_rate=0.4, epsilon=0.3, seed=42)
    assert got.patched.tolist() == expected
    torch.testing.assert_close(got.probability, torch.tensor(p, dtype=torch.float64))


def test_official_mode_patches_the_most_similar_module_more_often():
    sim = torch.tensor([0.95, 0.97, 0.93])
    counts = torch.zeros(3)
    for seed in range(400):
        counts += select_modules(sim, mode="official", seed=seed).patched.float()
    assert counts[1] > counts[0] > counts[2]  # P = 0.7 / 0.5 / 0.3


def test_same_seed_same_draw():
    sim = torch.linspace(0, 1, 50)
    first = select_modules(sim, mode="official", seed=3).patched
    assert torch.equal(first, select_modules(sim, mode="official", seed=3).patched)
    assert not torch.equal(first, select_modules(sim, mode="official", seed=4).patched)


def test_single_module_gets_the_upper_probability():
    got = select_modules(torch.tensor([0.4]), mode="official")
    assert got.probability is not None and got.probability.tolist() == pytest.approx([0.7])


def test_threshold_fraction_and_all_are_deterministic():
    sim = torch.tensor([0.5, 0.1, 0.3, 0.2])
    thr = select_modules(sim, mode="threshold", tau=0.25)
    assert thr.patched.tolist() == [False, True, False, True] and thr.probability is None
    frac = select_modules(sim, mode="fraction", layer_rate=0.5)
    assert frac.patched.tolist() == [False, True, False, True]
    assert select_modules(sim, mode="fraction", layer_rate=0.75).patched.tolist() == [False, True, True, True]
    assert select_modules(sim, mode="all").patched.tolist() == [True] * 4
    assert select_modules(sim, mode="all").count == 4


def test_fraction_ties_are_broken_by_module_order():
    sim = torch.tensor([0.2, 0.2, 0.2])
    assert select_modules(sim, mode="fraction", layer_rate=0.34).patched.tolist() == [True, False, False]


def test_bad_options_are_config_errors():
    sim = torch.tensor([0.5, 0.1])
    with pytest.raises(ConfigError, match="tau"):
        select_modules(sim, mode="threshold")
    with pytest.raises(ConfigError, match="mode"):
        select_modules(sim, mode="random")
    with pytest.raises(ConfigError, match="layer_rate"):
        select_modules(sim, mode="official", layer_rate=1.5)
    with pytest.raises(InputError):
        select_modules(torch.tensor([0.5, float("nan")]), mode="official")
    with pytest.raises(InputError):
        select_modules(torch.ones(2, 2), mode="all")
