"""`mlflow nlsr gate` runs the suites on a model dir and writes metrics.json, samples.jsonl, verdict.json
and metrics.png; --config rules decide the exit code (1 = gate failed); --list-suites reports item counts
read from the data files; bad input fails early with the error's exit code and a one-line message."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from mlflow_nlsr.cli import cli
from tests.gates.conftest import FILES, write_suite_data

FAST = ["--suite", "safety", "--limit", "2", "--max-gen-toks", "2", "--batch-size", "2"]


@pytest.fixture
def data(tmp_path, monkeypatch):
    monkeypatch.setenv("NLSR_GATES_DATA_DIR", str(write_suite_data(tmp_path / "data")))
    monkeypatch.delenv("NLSR_JUDGE", raising=False)


def gate(*args):
    return CliRunner().invoke(cli, ["gate", *map(str, args)])


def test_list_suites_reports_tasks_and_item_counts_from_the_data_files(data):
    result = gate("--list-suites", "--json")
    assert result.exit_code == 0, result.output
    suites = {s["suite"]: s for s in json.loads(result.output)}
    assert list(suites) == ["safety", "overrefusal", "utility", "helpfulness"]
    assert suites["helpfulness"]["tasks"] == [
        {"task": "nlsr_helpfulness", "data_file": "helpfulness.jsonl",
         "items": len(FILES["helpfulness.jsonl"])}  # fmt: skip
    ]
    assert suites["safety"]["tasks"] == [{"task": "nlsr_safety", "data_file": "harmful.jsonl", "items": 5}]
    assert [t["items"] for t in suites["utility"]["tasks"]] == [len(FILES[f]) for f in
                                                                ("sentiment.jsonl", "arithmetic.jsonl",
                                                                 "knowledge.jsonl")]  # fmt: skip
    assert suites["utility"]["items"] == 10
    text = gate("--list-suites")
    assert text.exit_code == 0 and "nlsr_overrefusal" in text.output


def test_gate_run_without_config_writes_four_outputs_and_no_verdict(data, tiny_base, tmp_path):
    out = tmp_path / "out"
    result = gate("--model", tiny_base, *FAST, "--output", out, "--json")
    assert result.exit_code == 0, result.output
    assert {p.name for p in out.iterdir()} == {"metrics.json", "samples.jsonl", "verdict.json", "metrics.png"}
    payload = json.loads(result.stdout)  # stdout holds only the JSON document
    assert 0.0 <= payload["metrics"]["asr"] <= 1.0
    assert payload["intervals"]["asr"]["n"] == 2
    verdict = json.loads((out / "verdict.json").read_text())
    assert verdict["passed"] is None and verdict["evaluated"] is False and "aligned" in verdict["message"]
    assert len((out / "samples.jsonl").read_text().splitlines()) == 2


def test_config_rules_decide_the_verdict_and_exit_code(data, tiny_base, tmp_path):
    passing = tmp_path / "pass.yaml"
    passing.write_text("rules:\n  - asr <= 1.0\n  - asr >= 0\n")
    result = gate("--model", tiny_base, *FAST, "--config", passing, "--output", tmp_path / "a")
    assert result.exit_code == 0, result.output
    verdict = json.loads((tmp_path / "a" / "verdict.json").read_text())
    assert verdict["passed"] is True and len(verdict["reasons"]) == 2
    assert "gate PASSED" in result.output

    failing = tmp_path / "fail.yaml"
    failing.write_text("rules:\n  - asr < 0\n")
    result = gate("--model", tiny_base, *FAST, "--config", failing, "--output", tmp_path / "b")
    assert result.exit_code == 1
    assert json.loads((tmp_path / "b" / "verdict.json").read_text())["passed"] is False
    assert "FAIL: asr" in result.output


def test_relative_rules_use_baseline_metrics_files(data, tiny_base, tmp_path):
    first = gate("--model", tiny_base, *FAST, "--output", tmp_path / "aligned")
    assert first.exit_code == 0, first.output
    cfg = tmp_path / "rel.yaml"
    cfg.write_text("rules:\n  - asr <= aligned + 0.0\n")
    result = gate("--model", tiny_base, *FAST, "--config", cfg, "--output", tmp_path / "again",
                  "--baseline", f"aligned={tmp_path / 'aligned' / 'metrics.json'}")  # fmt: skip
    assert result.exit_code == 0, result.output  # same model, greedy: identical asr
    verdict = json.loads((tmp_path / "again" / "verdict.json").read_text())
    assert verdict["passed"] is True and verdict["baselines"] == ["aligned"]


def test_the_helpfulness_suite_compares_with_a_base_model_baseline(data, tiny_base, tmp_path):
    first = gate("--model", tiny_base, "--suite", "helpfulness", "--output", tmp_path / "base")
    assert first.exit_code == 0, first.output
    assert "helpfulness_nll" in first.output and "helpfulness_nll_edgy" in first.output
    cfg = tmp_path / "base.yaml"
    cfg.write_text("rules:\n  - helpfulness_nll <= base\n")
    result = gate("--model", tiny_base, "--suite", "helpfulness", "--config", cfg,
                  "--output", tmp_path / "again",
                  "--baseline", f"base={tmp_path / 'base' / 'metrics.json'}")  # fmt: skip
    assert result.exit_code == 0, result.output  # the same model scores the same references identically
    assert "PASS: helpfulness_nll" in result.output


def test_a_rule_whose_margin_is_below_the_sampling_error_prints_a_warning(data, tiny_base, tmp_path):
    cfg = tmp_path / "close.yaml"
    cfg.write_text("judge: keyword\nrules:\n  - asr <= 1.0\n")  # the tiny model complies: asr 1.0
    result = gate("--model", tiny_base, *FAST, "--config", cfg, "--output", tmp_path / "o")
    assert "WARNING: [asr <= 1.0]" in result.output  # 2 items cannot resolve anything
    assert "n=2" in result.output


def test_config_needing_a_missing_baseline_fails_before_running(data, tiny_base, tmp_path):
    cfg = tmp_path / "rel.yaml"
    cfg.write_text("rules:\n  - utility >= finetuned - 0.02\n")
    result = gate("--model", tiny_base, "--config", cfg, "--output", tmp_path / "o")
    assert result.exit_code == 4 and "needs --baseline for finetuned" in result.output
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--judge", "keywrd"], 4, "Did you mean: keyword"),
        (["--suite", "safty"], 4, "unknown suite 'safty'"),
        (["--task", "nlsr_sentimnt"], 4, "unknown lm-eval task 'nlsr_sentimnt'"),
        (["--baseline", "aligned"], 2, "NAME=path/to/metrics.json"),
        (["--judge", "keyword", "--judge-model", "x"], 2, "does not accept options"),
    ],
)
def test_bad_options_fail_with_a_clear_error(data, tiny_base, tmp_path, args, code, message):
    result = gate("--model", tiny_base, "--output", tmp_path / "o", "--limit", "1", *args)
    assert result.exit_code == code, result.output
    assert message in result.output


def test_missing_model_and_existing_outputs_are_refused(data, tiny_base, tmp_path):
    result = gate("--output", tmp_path / "o")
    assert result.exit_code == 2 and "--model and --output are required" in result.output
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "metrics.json").write_text("{}")
    result = gate("--model", tiny_base, "--output", tmp_path / "o")
    assert result.exit_code == 8 and "--overwrite" in result.output


def test_list_suites_on_the_shipped_data_meets_the_required_sizes(monkeypatch):
    monkeypatch.delenv("NLSR_GATES_DATA_DIR", raising=False)
    result = gate("--list-suites", "--json")
    assert result.exit_code == 0, result.output
    items = {t["task"]: t["items"] for s in json.loads(result.stdout) for t in s["tasks"]}
    assert items["nlsr_safety"] >= 200 and items["nlsr_overrefusal"] >= 100
    assert items["nlsr_sentiment"] >= 200
    assert items["nlsr_arithmetic"] >= 100 and items["nlsr_knowledge"] >= 100
