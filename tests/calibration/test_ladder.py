"""The calibration ladder is deterministic and ordered by strength, least invasive first.

Predicted strength (|amplification − 1| × √(kept fraction × expected module fraction)) never decreases along
the ladder, seed variants exist only for Bernoulli rungs and sit right after their primary, the
configured options keep every knob the ladder does not set, and on a tiny model the measured strength
(relative change of the update) rises along the primary rungs too.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mlflow_nlsr.calibration.ladder import (
    DEFAULT_LEVELS,
    build_ladder,
    expected_fraction,
    option_diff,
    predicted_strength,
)
from mlflow_nlsr.errors import ConfigError
from mlflow_nlsr.options import RealignOptions


def test_ladder_is_sorted_by_predicted_strength_and_deterministic():
    ladder = build_ladder(RealignOptions())

    strengths = [r.predicted_strength for r in ladder]
    assert strengths == sorted(strengths)
    assert ladder == build_ladder(RealignOptions())
    assert [r.to_dict() for r in ladder] == [r.to_dict() for r in build_ladder(RealignOptions())]
    assert ladder[0].name == "sp0.6-modall-b0.6" and ladder[-1].name == "sp0.5-modall-b1.1"


def test_every_default_level_is_a_primary_rung_once():
    primaries = [r for r in build_ladder(RealignOptions()) if r.retry_of is None]

    assert len(primaries) == len(DEFAULT_LEVELS)
    assert len({r.name for r in primaries}) == len(primaries)
    assert any(r.apply(RealignOptions()) == RealignOptions() for r in primaries), "the defaults are a rung"


def test_seed_variants_follow_their_bernoulli_primary_only():
    options = RealignOptions(seed=7)
    ladder = build_ladder(options, seed_variants=2)

    for i, rung in enumerate(ladder):
        if rung.retry_of is None:
            continue
        primary = next(r for r in ladder if r.name == rung.retry_of)
        assert primary.changes["selection"] in ("official", "paper")
        assert rung.predicted_strength == primary.predicted_strength
        assert ladder.index(primary) < i and all(
            r.retry_of == primary.name for r in ladder[ladder.index(primary) + 1 : i]
        )
        assert rung.changes["selection_seed"] in (8, 9) and "seed" not in rung.changes
    all_rungs = [r for r in ladder if r.changes.get("selection") == "all"]
    assert all_rungs and all(r.retry_of is None and "selection_seed" not in r.changes for r in all_rungs)
    assert len([r for r in build_ladder(options, seed_variants=0) if r.retry_of]) == 0


def test_rungs_keep_the_knobs_they_do_not_set():
    options = RealignOptions(scorer="magnitude", variant="paper", epsilon=0.1, calibration_samples=16)

    for rung in build_ladder(options):
        applied = rung.apply(options)
        assert set(option_diff(options, applied)) <= {
            "sparsity",
            "beta",
            "selection",
            "layer_rate",
            "selection_seed",
        }
        assert (applied.scorer, applied.variant, applied.calibration_samples) == ("magnitude", "paper", 16)


def test_a_fraction_selection_stays_deterministic_and_gets_no_seed_variants():
    ladder = build_ladder(RealignOptions(selection="fraction"))

    assert {r.changes["selection"] for r in ladder} == {"fraction", "all"}
    assert not any(r.retry_of for r in ladder)


def test_safelora_has_a_single_configured_rung():
    ladder = build_ladder(RealignOptions(method="safelora"))

    assert len(ladder) == 1 and ladder[0].name == "configured" and dict(ladder[0].changes) == {}


def test_invalid_levels_are_config_errors():
    with pytest.raises(ConfigError):
        build_ladder(RealignOptions(), [(0.8, 0.0, 0.9)])
    with pytest.raises(ConfigError):
        build_ladder(RealignOptions(), [(1.5, 0.5, 0.9)])
    with pytest.raises(ConfigError):
        build_ladder(RealignOptions(), [])


def test_expected_fraction_is_the_clipped_bernoulli_mean():
    assert expected_fraction("all", 0.3, 0.2) == 1.0
    assert expected_fraction("fraction", 0.3, 0.2) == 0.3
    assert expected_fraction("official", 0.5, 0.2) == pytest.approx(0.5)
    # P in [-0.2, 0.4] clipped at 0: mean = (0.4^2 / 2) / 0.6
    assert expected_fraction("paper", 0.1, 0.3) == pytest.approx(0.08 / 0.6, abs=1e-3)


@given(
    sparsity=st.floats(0.0, 0.95),
    step=st.floats(0.01, 0.05),
    beta=st.floats(0.55, 2.0),
    rate=st.floats(0.05, 0.95),
)
def test_predicted_strength_grows_with_every_knob_above_the_aligned_reference(sparsity, step, beta, rate):
    o = RealignOptions(sparsity=sparsity, beta=beta, layer_rate=rate, selection="fraction")

    assert predicted_strength(o.replace(sparsity=sparsity + step)) < predicted_strength(o)
    assert predicted_strength(o.replace(beta=beta + step)) > predicted_strength(o)
    assert predicted_strength(o.replace(layer_rate=min(1.0, rate + step))) > predicted_strength(o)
    assert predicted_strength(o.replace(selection="all")) > predicted_strength(o)


def test_a_reference_equal_to_the_aligned_model_predicts_no_strength():
    # official: both LoRA factors × 2β, so β = 0.5 transplants the aligned values themselves
    assert predicted_strength(RealignOptions(beta=0.5)) == 0.0
    assert predicted_strength(RealignOptions(beta=0.4)) > 0.0, "a weaker reference moves entries too"
    assert predicted_strength(RealignOptions(beta=0.6)) < predicted_strength(RealignOptions(beta=0.9))


def test_measured_strength_rises_along_the_primary_rungs(tiny_adapters, tmp_path):
    from mlflow_nlsr.pipeline import realign

    base, aligned, finetuned = tiny_adapters
    options = RealignOptions(scorer="magnitude")
    measured = []
    for rung in build_ladder(options, seed_variants=0):
        report = realign(
            base, aligned, finetuned, tmp_path / rung.name, rung.apply(options), progress=False
        ).report
        measured.append(report["strength"]["relative_change"])

    assert measured == sorted(measured) and measured[0] < measured[-1] / 3


def test_the_module_draw_seed_falls_back_to_the_run_seed():
    assert RealignOptions(seed=5).draw_seed == 5
    assert RealignOptions(seed=5, selection_seed=9).draw_seed == 9
    with pytest.raises(ConfigError, match="selection_seed must be >= 0"):
        RealignOptions(selection_seed=-1)
