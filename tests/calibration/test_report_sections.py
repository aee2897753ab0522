"""The report keeps ActSVD's calibration data and the strength search apart, and old reports still read."""

from __future__ import annotations

from mlflow_nlsr import lineage
from mlflow_nlsr.calibration.records import calibration_reasons, calibration_tags
from mlflow_nlsr.report_sections import actsvd_data, calibration_search

DATA = {"source": "calibration_safety.jsonl", "generated": False, "sha256": "abc", "samples": 128,
        "response_tokens": 4000, "device": "cpu"}  # fmt: skip
SEARCH = {"attempts": [{"attempt": 1, "rung": "sp0.6", "passed": False, "strength": {}}], "chosen": 1,
          "chosen_rung": "sp0.6", "chosen_options": {"sparsity": 0.6}, "passed": False,
          "stop_reason": "ladder exhausted",
          "rejection": "calibration found no passing configuration"}  # fmt: skip


def test_a_new_report_reads_its_two_sections_by_their_own_keys():
    report = {"actsvd_data": DATA, "calibration_search": SEARCH}
    assert actsvd_data(report) == DATA and calibration_search(report) == SEARCH


def test_an_old_report_with_both_sections_merged_under_calibration_is_split():
    old = {"calibration": {**DATA, **SEARCH}}
    assert actsvd_data(old) == DATA
    assert calibration_search(old) == SEARCH


def test_an_old_report_with_only_actsvd_data_under_calibration_has_no_search():
    old = {"calibration": dict(DATA)}
    assert actsvd_data(old) == DATA
    assert calibration_search(old) is None and calibration_reasons(old) == []


def test_an_old_report_with_only_a_search_has_no_actsvd_data():
    old = {"calibration": dict(SEARCH)}
    assert actsvd_data(old) is None and calibration_search(old) == SEARCH


def test_old_and_new_reports_give_the_same_tags_and_rejection():
    old, new = {"calibration": {**DATA, **SEARCH}}, {"actsvd_data": DATA, "calibration_search": SEARCH}
    assert calibration_reasons(old) == calibration_reasons(new) == [SEARCH["rejection"]]
    assert calibration_tags(calibration_search(old) or {}) == calibration_tags(calibration_search(new) or {})
    tags = lineage.realigned_tags(
        source_name="m", source_version="1", job_id=7, base_uri="b", aligned_uri="a", report=old,
        config_sha256="c", verdict={"passed": False}, metrics={},
    )  # fmt: skip
    assert tags["nlsr.calibration.attempts"] == "1"


def test_a_report_without_calibration_has_neither_section():
    assert actsvd_data({}) is None and calibration_search({}) is None
