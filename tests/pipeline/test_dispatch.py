"""realign() picks LoRA mode for adapter dirs and reports when calibration-prompt generation was used."""

from __future__ import annotations

import json

from mlflow_nlsr.options import RealignOptions
from mlflow_nlsr.pipeline import realign, resolve_mode


def test_auto_mode_is_lora_for_adapter_dirs_and_full_otherwise(tiny_adapters):
    base, aligned, finetuned = tiny_adapters
    assert resolve_mode(aligned, finetuned, RealignOptions()) == "lora"
    assert resolve_mode(base, base, RealignOptions()) == "full"
    assert resolve_mode(aligned, finetuned, RealignOptions(mode="full")) == "full"


def test_calibration_prompts_generate_responses_with_the_reference(tiny_adapters, tmp_path):
    base, aligned, finetuned = tiny_adapters
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"question {i}"}) + "\n" for i in range(4)))
    opts = RealignOptions(calibration_prompts=str(prompts), calibration_samples=3, max_length=64)
    run = realign(base, aligned, finetuned, tmp_path / "out", opts, progress=False)
    info = run.report["actsvd_data"]
    assert info["generated"] is True and info["source"] == str(prompts)
    assert 1 <= info["samples"] <= 3 and info["response_tokens"] > 0
    assert run.report["inputs"]["calibration"] == info["sha256"]
