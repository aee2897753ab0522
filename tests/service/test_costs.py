import json

from mlflow_nlsr.options import RealignOptions
from mlflow_nlsr.service.costs import StageCosts, cost_metrics, record_costs


def test_a_stage_is_recorded_once_and_a_repeated_job_keeps_the_first_measurement(tmp_path):
    costs = StageCosts(tmp_path / "costs.json")
    with costs.stage("realign"):
        pass
    first = costs.load()
    with costs.stage("realign"):  # a rerun that reused the output: no new measurement
        pass
    assert costs.load() == first and [s["stage"] for s in first] == ["realign"]
    assert first[0]["seconds"] >= 0 and first[0]["peak_rss_mib"] > 0


def test_a_stage_that_raised_is_not_recorded(tmp_path):
    costs = StageCosts(tmp_path / "costs.json")
    try:
        with costs.stage("gate_realigned"):
            raise RuntimeError("worker died")
    except RuntimeError:
        pass
    assert costs.load() == []


def test_recording_unchanged_costs_leaves_the_report_file_untouched(tmp_path):
    out = tmp_path / "realigned"
    out.mkdir()
    (out / "nlsr_report.json").write_text(json.dumps({"method": "nlsr"}))
    costs = StageCosts(tmp_path / "costs.json")
    with costs.stage("realign", "cpu"):
        pass
    options = RealignOptions(device="cpu", dtype="float32")
    report = record_costs(out, costs, options)
    mtime = (out / "nlsr_report.json").stat().st_mtime_ns
    assert record_costs(out, costs, options) == report
    assert (out / "nlsr_report.json").stat().st_mtime_ns == mtime
    assert report["costs"]["device"] == "cpu" and "cost.realign.seconds" in cost_metrics(report)
