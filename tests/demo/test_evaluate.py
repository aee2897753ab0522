"""Greedy generation is batch-invariant under left padding and applies the given adapter."""

from __future__ import annotations

import pytest

from mlflow_nlsr.demo.evaluate import generate, generate_with, load_model
from mlflow_nlsr.errors import InputError
from tests.factories import make_lora_adapter

PROMPTS = ["Hi", "Tell me a much longer story about a cat.", "Why?"]


def test_batched_generation_equals_one_prompt_at_a_time(tiny_base):
    tok, model = load_model(tiny_base)
    assert tok.padding_side == "left"
    batched = generate_with(tok, model, PROMPTS, max_new_tokens=6, batch_size=3)
    single = [generate_with(tok, model, [p], max_new_tokens=6, batch_size=1)[0] for p in PROMPTS]
    assert len(batched) == len(PROMPTS)
    assert batched == single
    assert any(batched)


def test_an_adapter_changes_the_completions(tiny_base, tmp_path):
    strong = make_lora_adapter(tiny_base, tmp_path / "strong", scale=1.0, seed=5)
    plain = generate(tiny_base, PROMPTS, max_new_tokens=8, batch_size=2)
    adapted = generate(tiny_base, PROMPTS, adapter=strong, max_new_tokens=8, batch_size=2)
    assert plain != adapted


def test_missing_adapter_is_an_input_error(tiny_base, tmp_path):
    with pytest.raises(InputError, match="adapter_config.json"):
        generate(tiny_base, PROMPTS, adapter=tmp_path / "none", max_new_tokens=2)
