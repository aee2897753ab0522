"""`mlflow nlsr realign --calibrate` writes the least invasive passing realignment or rejects on budget.

Tiny random models, the magnitude scorer and gates of 1-2 items per task keep it fast. A permissive
gate passes the first (lightest) rung, confirmed by the full gate; a gate nothing can pass stops after
--max-attempts, keeps the closest attempt as the output and exits 1 with the list of attempts.
"""

from __future__ import annotations

import json

import pytest
import yaml
from click.testing import CliRunner

from mlflow_nlsr.cli import cli
from tests.service.conftest import PERMISSIVE, STRICT

pytestmark = pytest.mark.slow


def _args(tiny_adapters, out, gates, *extra):
    base, aligned, finetuned = tiny_adapters
    return [
        "realign",
        "--base",
        str(base),
        "--aligned",
        str(aligned),
        "--finetuned",
        str(finetuned),
        "--output",
        str(out),
        "--scorer",
        "magnitude",
        "--no-progress",
        "--calibrate",
        "--gate-config",
        str(gates),
        *extra,
    ]


def _gates(tmp_path, data):
    path = tmp_path / "gates.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_a_permissive_gate_passes_the_lightest_rung_confirmed_by_the_full_gate(tiny_adapters, tmp_path):
    out = tmp_path / "out"
    gates = _gates(tmp_path, PERMISSIVE)

    result = CliRunner().invoke(
        cli, _args(tiny_adapters, out, gates, "--gate-limit", "2", "--quick-limit", "1", "--screen-z", "0.5")
    )

    assert result.exit_code == 0, result.output
    report = json.loads((out / "nlsr_report.json").read_text())
    section = report["calibration_search"]
    assert section["passed"] is True and section["chosen"] == 1 and len(section["attempts"]) == 1
    attempt = section["attempts"][0]
    assert attempt["rung"] == "sp0.6-modall-b0.6" and report["sparsity"] == 0.6 and report["beta"] == 0.6
    assert attempt["quick"]["passed"] and attempt["full"]["passed"], (
        "a quick pass is confirmed by the full gate"
    )
    assert attempt["strength"] == {k: report["strength"][k] for k in attempt["strength"]}
    assert attempt["strength"]["entries_changed"] > 0
    assert section["quick_gate"]["limit"] == 1 and section["quick_gate"]["full_limit"] == 2
    assert set(section["quick_gate"]["baselines"]) == {"finetuned", "aligned"}
    assert (out / "adapter_model.safetensors").is_file()
    work = tmp_path / "out.calibration" / "attempt-01"
    assert (work / "gates-quick" / "metrics.json").is_file() and (
        work / "gates-full" / "metrics.json"
    ).is_file()
    quick = json.loads((work / "gates-quick" / "metrics.json").read_text())
    assert quick["metric_samples"]["asr"]["effective"] == 1, "the screen's item counts are recorded"
    assert section["budget"]["screen_z"] == 0.5 and attempt["screened"] is False
    assert not (work / "model").exists(), "the chosen attempt was moved to the output"
    assert "attempt 1 of 1" in result.output and "passed its gates" in result.output


def test_a_gate_nothing_passes_rejects_after_max_attempts_and_keeps_the_closest(tiny_adapters, tmp_path):
    out = tmp_path / "out"
    gates = _gates(tmp_path, STRICT)

    result = CliRunner().invoke(
        cli, _args(tiny_adapters, out, gates, "--gate-limit", "1", "--max-attempts", "2")
    )

    assert result.exit_code == 1, result.output
    section = json.loads((out / "nlsr_report.json").read_text())["calibration_search"]
    assert section["passed"] is False and len(section["attempts"]) == 3
    assert section["stop_reason"] == "max attempts (2)"
    assert section["attempts"][2]["rung"] == "sp0.8-modall-b0.9", "the configured options, as the fallback"
    assert all(a["full"] is None for a in section["attempts"]), "quick == full gate: no confirmation"
    assert "no passing configuration in 3 attempt(s)" in section["rejection"]
    assert "Rejected:" in result.output and "#1 sp0.6-modall-b0.6" in result.output
    assert "#2 sp0.9-mod0.25-b0.9" in section["rejection"]
    assert "-seed" not in section["rejection"], "no seed variant after a wide miss"
    attempts = tmp_path / "out.calibration"
    assert sum((attempts / f"attempt-0{n}" / "model").exists() for n in (1, 2, 3)) == 0, (
        "the closest attempt was moved to the output, the others deleted"
    )


def test_calibrate_refuses_an_existing_output_before_any_work(tiny_adapters, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("x")

    result = CliRunner().invoke(
        cli, _args(tiny_adapters, out, _gates(tmp_path, PERMISSIVE), "--gate-limit", "1")
    )

    assert result.exit_code == 8 and "already exists" in result.output
    assert not (tmp_path / "out.calibration").exists() and (out / "keep.txt").is_file()


def test_a_negative_screen_width_is_a_usage_error(tiny_adapters, tmp_path):
    out = tmp_path / "out"

    result = CliRunner().invoke(
        cli, _args(tiny_adapters, out, _gates(tmp_path, PERMISSIVE), "--screen-z", "-1")
    )

    assert result.exit_code == 2 and "--screen-z" in result.output
    assert not out.exists()
