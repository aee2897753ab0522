"""The numbers a review page prints: stage timings from the audit trail, rule margins, intervals at the
gate run's item counts, fix hints, pagination, and the model card's link to the page.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from mlflow_nlsr import lineage
from mlflow_nlsr.gates.stats import interval_of_rate
from mlflow_nlsr.store.tables import AuditEvent
from mlflow_nlsr.web import model

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)


def _events(*steps: tuple[str, int]) -> list[AuditEvent]:
    return [
        AuditEvent(
            at=T0 + timedelta(seconds=s),
            actor="a" if e == "enqueued" else "w",
            event=e,
            model_name="m",
            version="1",
        )  # fmt: skip
        for e, s in steps
    ]


def test_each_stage_lasts_from_the_end_of_the_previous_one_to_its_own_end():
    events = _events(("enqueued", 0), ("claimed", 5), ("realigned", 65), ("gated", 365), ("rejected", 370))
    assert model.stage_timings(events) == {"queued": 5, "realign": 60, "gates": 300, "register": 5}
    assert model.registered_by(events) == "a"


def test_a_stage_not_reached_yet_has_no_timing():
    assert model.stage_timings(_events(("enqueued", 0), ("claimed", 2))) == {
        "queued": 2, "realign": None, "gates": None, "register": None,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("rule", "value", "threshold", "margin"),
    [
        ("asr <= 0.10", 0.25, 0.10, -0.15),
        ("asr < 0.5", 0.2, 0.5, 0.3),
        ("utility >= finetuned - 0.05", 0.7, 0.65, 0.05),
    ],
)
def test_a_margin_is_positive_inside_the_threshold_and_negative_outside(rule, value, threshold, margin):
    assert model.margin({"rule": rule, "value": value, "threshold": threshold}) == pytest.approx(margin)


def test_failing_rules_come_first_and_each_gets_a_fix_hint():
    verdict = {"passed": False, "reasons": [
        {"rule": "utility >= 0.5", "metric": "utility", "value": 0.6, "threshold": 0.5, "passed": True},
        {"rule": "asr <= 0.1", "metric": "asr", "value": 0.3, "threshold": 0.1, "passed": False},
    ]}  # fmt: skip
    rows = model.rule_rows(verdict)
    assert [r.metric for r in rows] == ["asr", "utility"]
    hints = model.fix_hints(rows, {"calibration": {"rejection": "no rung passed", "stop_reason": "budget"}})
    assert hints[0].startswith("asr must be lower by at least 0.2000")
    assert "Calibration: no rung passed" in hints and len(hints) == 3


def test_metrics_carry_the_wilson_interval_at_the_gate_runs_item_count():
    metrics = {"aligned": {"asr": 0.05}, "finetuned": {"asr": 0.45}, "realigned": {"asr": 0.25, "ppl": 12.5}}
    rows = {r.metric: r for r in model.metric_rows(metrics, {"asr": {"task": "harm", "effective": 40}})}
    cell = rows["asr"].cells["realigned"]
    assert cell == model.Cell(0.25, interval_of_rate(0.25, 40)) and cell.n == 40
    assert rows["asr"].task == "harm"
    assert rows["ppl"].cells["realigned"] == model.Cell(12.5), "a non-rate gets no interval"
    assert rows["ppl"].cells["realigned"].n == 0
    assert rows["ppl"].cells["aligned"] is None


def test_pages_are_clamped_to_the_range_there_is():
    assert model.page_of(list(range(60)), 3, 25) == (list(range(50, 60)), 3)
    assert model.page_of([], 9, 25) == ([], 1)


def test_the_model_card_link_points_at_the_sources_review_page():
    assert lineage.review_path("team/llm x", 7) == "/nlsr/models/team%2Fllm%20x/versions/7"
    assert lineage.review_link("m", "3").endswith("(/nlsr/models/m/versions/3)")


def test_the_decision_shown_is_the_event_that_put_the_job_in_its_state():
    events = _events(("enqueued", 0), ("claimed", 1), ("gated", 2))
    decided = AuditEvent(
        at=T0, actor="max", event="rejected", model_name="m", version="1", decision="rejected",
        reasons=["rejected by max: too close"],
    )  # fmt: skip
    assert model.final_decision([*events, decided], "rejected") is decided
    assert model.final_decision(events, "rejected") is None
