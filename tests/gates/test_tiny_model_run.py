"""A real gate run on a tiny random Llama (HFLM, chat template, greedy generation, PEFT adapter or
in-memory model) finishes quickly with --limit, honours max_gen_toks and writes every output file."""

from __future__ import annotations

import json

import pytest

from mlflow_nlsr.errors import ConfigError, InputError
from mlflow_nlsr.gates.runner import run_gates

LIMIT = 3


@pytest.fixture(scope="module")
def tiny_run(tiny_base, tmp_path_factory):
    from tests.gates.conftest import write_suite_data

    tmp = tmp_path_factory.mktemp("tiny-run")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NLSR_GATES_DATA_DIR", str(write_suite_data(tmp / "data")))
        yield run_gates(tiny_base, limit=LIMIT, batch_size=4, max_gen_toks=4, output_dir=tmp / "out")


def test_every_metric_is_a_rate_and_utility_is_the_mean(tiny_run):
    m = tiny_run.metrics
    for name in (
        "asr",
        "refusal_rate",
        "sentiment_acc",
        "arithmetic_exact_match",
        "knowledge_acc",
        "utility",
    ):
        assert 0.0 <= m[name] <= 1.0, name
    assert m["utility"] == pytest.approx(
        (m["sentiment_acc"] + m["arithmetic_exact_match"] + m["knowledge_acc"]) / 3
    )
    assert any(k.startswith("asr_") for k in m)


def test_limit_and_max_gen_toks_are_honoured(tiny_run, tiny_base):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_base)
    assert all(v["effective"] == LIMIT for v in tiny_run.results["n-samples"].values())
    generated = [r for r in tiny_run.samples if r["task"] not in ("nlsr_knowledge", "nlsr_helpfulness")]
    assert len(generated) == 4 * LIMIT
    # byte-level vocab without merges: each generated token decodes to at most one character
    # (an incomplete UTF-8 byte becomes one U+FFFD), so 4 tokens give at most 4 characters
    assert max(len(r["response"]) for r in generated) <= 4, [r["response"] for r in generated]
    assert len(tok.encode("abcd", add_special_tokens=False)) == 4
    assert all(r["prompt"].startswith("<|im_start|>user\n") for r in generated)


def test_the_run_writes_metrics_samples_and_chart(tiny_run):
    out = tiny_run.outputs
    summary = json.loads(out["metrics"].read_text())
    assert summary["metrics"] == pytest.approx(tiny_run.metrics)
    assert summary["chat_template"] is True and summary["limit"] == LIMIT
    assert len(out["samples"].read_text().splitlines()) == 6 * LIMIT
    assert out["chart"].stat().st_size > 1000


def test_helpfulness_counts_exactly_the_reference_tokens_lm_eval_scored(tiny_run, tiny_base):
    from lm_eval.models.huggingface import HFLM

    lm = HFLM(pretrained=str(tiny_base), device="cpu", dtype="float32", batch_size=1)
    rows = [r for r in tiny_run.samples if r["task"] == "nlsr_helpfulness"]
    scored = [len(lm._encode_pair(r["prompt"], r["target"])[1]) for r in rows]  # the logged context
    assert len(rows) == LIMIT and tiny_run.metrics["helpfulness_tokens"] == sum(scored)
    summed_nll = sum(-r["response"][0] for r in rows)
    assert tiny_run.metrics["helpfulness_nll"] == pytest.approx(summed_nll / sum(scored))


def test_adapter_and_in_memory_model_runs(tiny_adapters, gate_data):
    from transformers import AutoModelForCausalLM

    base, aligned, _ = tiny_adapters
    with_adapter = run_gates(base, adapter=aligned, suites="safety", limit=2, max_gen_toks=2)
    assert with_adapter.settings["adapter"] == str(aligned)
    assert with_adapter.results["n-samples"]["nlsr_safety"]["effective"] == 2
    model = AutoModelForCausalLM.from_pretrained(base)
    in_memory = run_gates(base, model=model, suites="overrefusal", limit=2, max_gen_toks=2)
    assert 0.0 <= in_memory.metrics["refusal_rate"] <= 1.0


def test_missing_model_dir_or_adapter_is_an_input_error(tiny_base, tmp_path, gate_data):
    with pytest.raises(InputError, match="does not exist"):
        run_gates(tmp_path / "absent", suites="safety", limit=1)
    with pytest.raises(InputError, match="adapter_config.json"):
        run_gates(tiny_base, adapter=tmp_path, suites="safety", limit=1)
    with pytest.raises(ConfigError, match="not both"):
        run_gates(tiny_base, model=object(), adapter=tmp_path, suites="safety", limit=1)
