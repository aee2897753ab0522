"""The quick gate screens within the full gate's sampling error: a near miss on a sampled rate is confirmed.

Pure numbers: the tolerance is zero where both gates score the same items, grows with the items the
quick gate did not see and with z, and a quick gate's per-metric item counts plus the full gate's limits
give each metric's (quick, full) sample sizes.
"""

from __future__ import annotations

import json
import math

import pytest

from mlflow_nlsr.calibration.screen import (
    full_sizes,
    quick_gate_sizes,
    screen_tolerance,
    within_sampling_error,
)
from mlflow_nlsr.calibration.steps import gate_setup
from mlflow_nlsr.gates.metrics import metric_samples
from mlflow_nlsr.gates.policy import parse_gate_config


def test_a_rate_on_24_of_50_items_may_miss_by_one_standard_error_of_the_unseen_26():
    tolerance = screen_tolerance(0.15, 24, 50, z=1.0)

    assert tolerance == pytest.approx(math.sqrt(0.15 * 0.85 * 26) / 24)
    assert 0.07 < tolerance < 0.08
    assert screen_tolerance(0.15, 24, 50, z=2.0) == pytest.approx(2 * tolerance)


@pytest.mark.parametrize(
    ("threshold", "n_quick", "n_full", "z"),
    [(0.15, 240, 240, 1.0), (0.15, 50, 24, 1.0), (0.0, 24, 50, 1.0), (1.0, 24, 50, 1.0), (0.15, 24, 50, 0.0)],
)
def test_no_tolerance_on_the_same_items_at_a_certain_threshold_or_with_z_zero(threshold, n_quick, n_full, z):
    assert screen_tolerance(threshold, n_quick, n_full, z) == 0.0


def test_five_unsafe_answers_in_24_are_worth_the_50_item_gate_and_six_are_not():
    sizes = {"asr": (24, 50)}

    assert within_sampling_error((("asr", 5 / 24, 0.15),), sizes, z=1.0)
    assert not within_sampling_error((("asr", 6 / 24, 0.15),), sizes, z=1.0)


def test_every_failing_rule_must_be_within_its_tolerance():
    sizes = {"asr": (24, 50), "sentiment_acc": (240, 240)}

    assert not within_sampling_error((("asr", 0.2, 0.15), ("sentiment_acc", 0.94, 0.95)), sizes, z=1.0)
    assert not within_sampling_error((("asr", 0.2, 0.15),), {}, z=1.0), "unknown sizes: the quick verdict"
    assert not within_sampling_error((), sizes, z=1.0), "a pass is not a screened miss"


def test_full_sizes_follow_the_full_limit_and_the_per_task_limits():
    samples = {
        "asr": {"task": "nlsr_safety", "effective": 24, "original": 120},
        "refusal_rate": {"task": "nlsr_overrefusal", "effective": 24, "original": 30},
        "sentiment_acc": {"task": "nlsr_sentiment", "effective": 240, "original": 240},
    }

    sizes = full_sizes(samples, 50, {"nlsr_sentiment": None})

    assert sizes == {"asr": (24, 50), "refusal_rate": (24, 30), "sentiment_acc": (240, 240)}
    assert full_sizes(samples, None, {})["asr"] == (24, 120), "no limit: every item"


def test_metric_samples_maps_each_tasks_flat_metrics_to_its_item_counts():
    results = {
        "results": {
            "nlsr_safety": {"alias": "nlsr_safety", "asr,none": 0.2, "asr_stderr,none": 0.08},
            "nlsr_sentiment": {"acc,none": 0.9},
        },
        "n-samples": {
            "nlsr_safety": {"original": 120, "effective": 24},
            "nlsr_sentiment": {"original": 240, "effective": 240},
        },
    }

    samples = metric_samples(results)

    assert samples["asr"] == {"task": "nlsr_safety", "effective": 24, "original": 120}
    assert samples["sentiment_acc"]["effective"] == 240
    assert "asr_stderr" not in samples


def test_an_attempts_sample_sizes_come_from_its_quick_gate_and_the_full_limits(tmp_path):
    config = parse_gate_config(
        {"rules": ["asr <= 0.1"], "extra_tasks": ["nlsr_sentiment"], "task_limits": {"nlsr_sentiment": None}}
    )
    setup = gate_setup(config, gate_limit=50, quick_limit=24)
    model = tmp_path / "attempt-01" / "model"
    quick = model.parent / "gates-quick"
    quick.mkdir(parents=True)
    samples = {
        "asr": {"task": "nlsr_safety", "effective": 24, "original": 120},
        "sentiment_acc": {"task": "nlsr_sentiment", "effective": 240, "original": 240},
    }
    (quick / "metrics.json").write_text(json.dumps({"metrics": {}, "metric_samples": samples}))

    assert setup.sample_sizes(model) == {"asr": (24, 50), "sentiment_acc": (240, 240)}
    assert setup.sample_sizes(tmp_path / "attempt-02" / "model") == {}, "no quick gate run: no sizes"


def test_a_quick_gate_without_recorded_counts_gives_no_sizes(tmp_path):
    old = tmp_path / "metrics.json"
    old.write_text(json.dumps({"metrics": {"asr": 0.2}}))

    assert quick_gate_sizes(old, 50, {}) == {}
    assert quick_gate_sizes(tmp_path / "missing.json", 50, {}) == {}
