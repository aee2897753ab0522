"""The demo's orchestration on a tiny random model: one registry job per run, every model in the summary.

A run starts a real ``mlflow server --app-name nlsr``; the fine-tuned version is queued by both
triggers into exactly one job, the worker decides, and every model is written as a merged HF dir. A
rerun on the same inputs reuses every stage (training, the job's realignment, comparisons, gates).
"""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from mlflow_nlsr.demo import job as registry_job
from mlflow_nlsr.demo.orchestrate import DemoConfig, run_demo
from mlflow_nlsr.demo.report import ROLES

pytestmark = pytest.mark.slow

# magnitude scoring: data-free and fast on the tiny model; the real demo uses the product defaults
TINY_REALIGN = {"scorer": "magnitude"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_data, tiny_spec):
    """Run the tiny demo twice in one work dir: (first summary, rerun summary, config)."""
    from mlflow_nlsr.demo.recipe import DemoSettings

    root = tmp_path_factory.mktemp("tiny-demo")
    settings = DemoSettings(
        align_epochs=1, attack_epochs=1, align_lr=1e-3, attack_lr=1e-3, poison_ratio=0.25, answer_tokens=4,
        max_length=192, batch_size=4, gen_batch_size=2, data_dir=str(tiny_data), progress=False,
        model=tiny_spec,
    )  # fmt: skip
    config = DemoConfig(
        work=root / "work", output=root / "out", settings=settings, gate_limit=2, progress=False,
        realign=TINY_REALIGN,
    )  # fmt: skip
    first = run_demo(config, echo=lambda _: None)
    job_dir = config.work / "service" / "jobs" / registry_job.FINETUNED_NAME / "1"
    realigned_report = job_dir / "realigned" / "nlsr_report.json"
    mtime = realigned_report.stat().st_mtime_ns
    # the rerun computes (cached) comparisons in this process: both paths must report the same rows
    second = run_demo(dataclasses.replace(config, parallel=False), echo=lambda _: None)
    return first, second, config, mtime == realigned_report.stat().st_mtime_ns


def test_every_model_has_metrics_and_a_merged_hf_dir(runs):
    from transformers import AutoModelForCausalLM

    first, _, _, _ = runs
    base = AutoModelForCausalLM.from_pretrained(first["base"]["local_dir"])
    for role in ROLES:
        entry = first[role]
        assert {"asr", "refusal_rate", "utility", "local_dir"} <= set(entry)
        assert all(0.0 <= entry[m] <= 1.0 for m in ("asr", "refusal_rate", "utility"))
        model = AutoModelForCausalLM.from_pretrained(entry["local_dir"])
        assert not any("lora" in name for name, _ in model.named_parameters())
        if role in ("finetuned", "realigned"):  # adapters were merged in: the weights moved off the base
            moved = any(
                not torch.equal(p, base.state_dict()[n]) for n, p in model.state_dict().items() if "proj" in n
            )
            assert moved, f"{role} equals the base model: its adapter was not merged"


def test_both_triggers_queue_one_job_and_only_the_rule_s_model_is_realigned(runs):
    first, _, _, _ = runs
    job = first["job"]
    assert sorted(set(job["triggers"])) == ["app", "webhook"]
    assert job["triggers"].count("app") == 1  # enqueued once, the webhook's delivery was a duplicate
    assert {s["model_name"] for s in job["skipped"]} == {registry_job.BASE_NAME, registry_job.ALIGNED_NAME}
    assert all(s["state"] == "skipped" for s in job["skipped"])


def test_the_decision_follows_the_verdict(runs):
    first, _, _, _ = runs
    promoted, verdict = first["promoted"], first["job"]["verdict"]
    assert promoted["promoted"] == bool(verdict["passed"]) == (first["job"]["state"] == "promoted")
    assert promoted["verdict"] == ("passed" if verdict["passed"] else "failed")
    if promoted["promoted"]:
        assert promoted["alias_version"] == promoted["version"]
    else:
        assert promoted["alias"] is None and promoted["model_uri"].endswith(f"/{promoted['version']}")


def test_the_summary_names_the_options_seconds_and_tracking_server(runs):
    first, _, config, _ = runs
    assert first["tracking_uri"].startswith("http://127.0.0.1:")
    assert first["options"]["realigned"]["scorer"] == "magnitude"
    assert first["options"]["official"]["selection"] == "official"
    assert first["options"]["safelora"]["method"] == "safelora"
    assert first["options"]["random_control"]["scorer"] == "random"
    assert {"base", "align", "answers", "attack", "worker", "total"} <= set(first["seconds"])
    on_disk = json.loads((config.output / "summary.json").read_text())
    assert on_disk["promoted"] == first["promoted"]
    for name in ("metrics.png", "similarity.png"):
        assert (config.output / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = (config.output / "report.md").read_text()
    assert "| realigned |" in text
    assert "nlsr_sentiment: all" in text  # the utility task is gated on every item
    assert "decline judge" in text


def test_the_report_shows_finetuned_and_realigned_answers_from_the_job_s_own_gate_samples(runs):
    first, second, config, _ = runs
    from mlflow_nlsr.demo import answers

    for summary in (first, second):  # the rerun reuses cached gates: their dirs are found all the same
        for role in ("aligned", "finetuned", "realigned"):
            samples = answers.read_samples(summary[role]["gate_dir"])
            assert {row["task"] for row in samples} >= {"nlsr_safety", "nlsr_overrefusal"}, role
            assert summary[role]["n"]["asr"] == len([r for r in samples if r["task"] == "nlsr_safety"])
    text = (config.output / "report.md").read_text()
    assert "samples of both" not in text  # the "(no … samples … were found)" placeholder
    benign = text.split("### Benign prompts")[1].split("### Harmful")[0]
    assert "| prompt | finetuned | realigned |" in benign
    assert len([line for line in benign.splitlines() if line.startswith("| ")]) == 1 + config.gate_limit


def test_a_rerun_reuses_every_stage_and_reports_the_same_numbers(runs):
    first, second, _, job_output_reused = runs
    assert all(second["cached"].values()), second["cached"]
    assert job_output_reused, "the rerun realigned again instead of reusing the job's output"
    for role in ROLES:
        assert second[role]["asr"] == first[role]["asr"]
        assert second[role]["utility"] == first[role]["utility"]
    assert second["job"]["state"] == first["job"]["state"]


def test_comparisons_run_in_a_second_process_beside_the_job_when_there_are_two_cores(runs):
    from mlflow_nlsr.demo.compare import usable_cores

    first, second, _, _ = runs
    assert first["parallel"] == (usable_cores() >= 2)
    assert second["parallel"] is False
    if first["parallel"]:  # the comparisons' CPU time is the second process's, not the main one's
        assert first["cpu_seconds"]["comparisons_process"] > 0
