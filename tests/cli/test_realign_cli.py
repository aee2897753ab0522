"""`mlflow nlsr realign` explains itself, writes the four outputs, lets flags override the YAML config, and
fails with a one-line `Error:` and no output dir on bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from mlflow_nlsr.cli import cli
from tests import factories
from tests.pipeline.conftest import write_pairs


def _argv(base, aligned, finetuned, out, *extra):
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
        *extra,
    ]


def _args(tiny_adapters, out, *extra):
    return _argv(*tiny_adapters, out, "--no-progress", *extra)


def test_help_explains_inputs_outputs_and_that_actsvd_loads_the_model():
    result = CliRunner().invoke(cli, ["realign", "--help"])
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    for needle in (
        "--aligned",
        "--finetuned",
        "masks.safetensors",
        "nlsr_report.json",
        "similarity.png",
        "actsvd, loads the model",
        "--config",
        "[default: 0.8]",
    ):
        assert needle in text, needle


def test_run_writes_the_four_outputs_and_a_summary(tiny_adapters, tmp_path):
    calib = write_pairs(tmp_path / "c.jsonl")
    out = tmp_path / "out"
    result = CliRunner().invoke(
        cli,
        _args(
            tiny_adapters,
            out,
            "--calibration",
            str(calib),
            "--calibration-samples",
            "4",
            "--max-length",
            "64",
        ),
    )
    assert result.exit_code == 0, result.output
    for name in (
        "adapter_model.safetensors",
        "adapter_config.json",
        "masks.safetensors",
        "nlsr_report.json",
        "similarity.png",
    ):
        assert (out / name).is_file(), name
    assert "patched" in result.output and str(out) in result.output


def test_json_prints_the_report_and_flags_override_the_config(tiny_adapters, tmp_path):
    cfg = tmp_path / "nlsr.yaml"
    cfg.write_text("realign:\n  scorer: magnitude\n  seed: 3\n  sparsity: 0.5\n  selection: fraction\n")
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, _args(tiny_adapters, out, "--config", str(cfg), "--seed", "0", "--json"))
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report == json.loads((out / "nlsr_report.json").read_text())
    assert report["scorer"] == "magnitude" and report["sparsity"] == 0.5 and report["selection"] == "fraction"
    assert report["seed"] == 0  # the flag wins over the config, even when it is 0
    assert report["selection_seed"] == 0, "the module draw follows --seed unless --selection-seed is given"


def test_selection_seed_flag_sets_only_the_module_draw_seed(tiny_adapters, tmp_path):
    out = tmp_path / "out"
    result = CliRunner().invoke(
        cli, _args(tiny_adapters, out, "--scorer", "magnitude", "--selection-seed", "7", "--json")
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert (report["seed"], report["selection_seed"]) == (42, 7)


def test_fresh_lora_fails_with_a_clear_error_and_no_output(tiny_adapters, tmp_path):
    base, aligned, _ = tiny_adapters
    fresh = factories.make_lora_adapter(base, tmp_path / "fresh", seed=55)
    out = tmp_path / "out"
    args = _argv(base, aligned, fresh, out, "--scorer", "magnitude")
    result = CliRunner().invoke(cli, args)
    assert result.exit_code != 0
    assert result.output.startswith("Error:") and "--force" in result.output
    assert not out.exists()
    forced = CliRunner().invoke(cli, [*args, "--force", "--no-progress"])
    assert forced.exit_code == 0, forced.output


def test_missing_adapter_and_bad_option_values_are_errors(tiny_adapters, tmp_path):
    out = tmp_path / "out"
    base, aligned, _ = tiny_adapters
    missing = CliRunner().invoke(cli, _argv(base, aligned, tmp_path / "nope", out))
    assert missing.exit_code == 3 and "Error:" in missing.output and "does not exist" in missing.output
    bad = CliRunner().invoke(cli, _args(tiny_adapters, out, "--sparsity", "1.5"))
    assert bad.exit_code == 2 and "Error: sparsity must be in [0, 1]" in bad.output
    assert not out.exists()


def test_mlflow_nlsr_realign_help_runs_as_a_console_command():
    exe = Path(sys.executable).parent / "mlflow"
    proc = subprocess.run(
        [str(exe), "nlsr", "realign", "--help"], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    assert "--finetuned" in proc.stdout
