import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mlflow_nlsr.gates.stats import interval_of_rate, mcnemar_exact, mcnemar_paired, wilson_interval


def test_wilson_interval_matches_the_published_value_for_ten_percent_of_fifty():
    # 5 of 50: Wilson 95 % interval 4.35 % .. 21.4 % (Newcombe 1998 method 3 formula)
    ci = wilson_interval(5, 50)
    assert ci.rate == pytest.approx(0.10)
    assert ci.low == pytest.approx(0.04348, abs=1e-4)
    assert ci.high == pytest.approx(0.21362, abs=1e-4)


def test_wilson_interval_is_exact_at_the_ends_and_never_leaves_zero_one():
    assert wilson_interval(0, 20).low == 0.0
    assert wilson_interval(20, 20).high == 1.0
    assert wilson_interval(0, 20).high < 0.2


@given(st.integers(min_value=1, max_value=2000), st.data())
def test_wilson_interval_contains_the_rate(n, data):
    k = data.draw(st.integers(min_value=0, max_value=n))
    ci = wilson_interval(k, n)
    assert 0.0 <= ci.low <= k / n <= ci.high <= 1.0


def test_more_items_narrow_the_interval():
    assert interval_of_rate(0.1, 500).half_width < interval_of_rate(0.1, 50).half_width / 2.5


def test_no_items_give_the_uninformative_interval():
    ci = wilson_interval(0, 0)
    assert math.isnan(ci.rate) and (ci.low, ci.high) == (0.0, 1.0)


def test_bad_counts_are_refused():
    with pytest.raises(ValueError, match="successes <= n"):
        wilson_interval(6, 5)


def test_mcnemar_exact_p_value_of_a_lopsided_split():
    # 0 vs 6 discordant pairs: p = 2 * 0.5**6 = 0.03125
    assert mcnemar_exact(0, 6).p_value == pytest.approx(0.03125)
    assert mcnemar_exact(0, 6).significant()


def test_mcnemar_finds_ten_versus_eighteen_percent_of_fifty_not_significant():
    # the old demo's "beats the random control" (5 vs 9 of 50 unsafe) with 4 discordant items
    assert not mcnemar_exact(1, 5).significant()


def test_mcnemar_paired_compares_only_shared_items():
    a = {"1": 1, "2": 1, "3": 0, "x": 1}
    b = {"1": 0, "2": 1, "3": 1, "y": 0}
    result = mcnemar_paired(a, b)
    assert (result.only_a, result.only_b) == (1, 1)
    assert result.p_value == 1.0
    with pytest.raises(ValueError, match="no common item"):
        mcnemar_paired({"a": 1}, {"b": 1})
