"""Calibration pairs are rendered with the chat template, only response tokens are labelled, bad files fail
naming the line, and generated responses come from the reference model itself."""

from __future__ import annotations

import json

import pytest
import torch

from mlflow_nlsr.errors import CalibrationError, InputError
from mlflow_nlsr.pipeline import actsvd_data as calib
from tests import factories


@pytest.fixture(scope="module")
def tok():
    return factories.make_tokenizer()


def test_prompt_tokens_are_ignored_and_response_tokens_kept(tok):
    sample = calib.encode_pair(tok, "Hi there", "No way.", max_length=256)
    n_prompt = len(tok(calib.render_prompt(tok, "Hi there"), add_special_tokens=False)["input_ids"])
    assert torch.all(sample.labels[:n_prompt] == calib.IGNORE_INDEX)
    kept = sample.labels[n_prompt:]
    assert torch.all(kept == sample.input_ids[n_prompt:])
    assert "No way." in tok.decode(kept)


def test_samples_are_truncated_to_max_length(tok):
    sample = calib.encode_pair(tok, "Q", "x" * 500, max_length=40)
    assert sample.input_ids.numel() == 40
    assert calib.encode_pair(tok, "a long prompt " * 20, "yes", max_length=16) is None


def test_seeded_shuffle_takes_the_requested_number(tok):
    pairs = [{"prompt": f"p{i}", "response": f"r{i}"} for i in range(20)]
    a = calib.encode_pairs(tok, pairs, samples=5, max_length=64, seed=1)
    b = calib.encode_pairs(tok, pairs, samples=5, max_length=64, seed=1)
    c = calib.encode_pairs(tok, pairs, samples=5, max_length=64, seed=2)
    assert len(a) == 5
    assert all(torch.equal(x.input_ids, y.input_ids) for x, y in zip(a, b, strict=True))
    assert any(not torch.equal(x.input_ids, y.input_ids) for x, y in zip(a, c, strict=True))


def test_malformed_lines_are_reported_with_their_number(tmp_path):
    f = tmp_path / "c.jsonl"
    f.write_text('{"prompt": "a", "response": "b"}\n\n{"prompt": "a"}\n')
    with pytest.raises(CalibrationError, match="line 3.*'response'"):
        calib.load_pairs(f)
    f.write_text('{"prompt": "a", "response": "b"}\n[1, 2]\n')
    with pytest.raises(CalibrationError, match="line 2: expected a JSON object"):
        calib.load_pairs(f)


def test_empty_and_missing_files_are_calibration_errors(tmp_path):
    (tmp_path / "e.jsonl").write_text("\n\n")
    with pytest.raises(CalibrationError, match="no samples"):
        calib.load_pairs(tmp_path / "e.jsonl")
    with pytest.raises(CalibrationError, match="does not exist"):
        calib.load_pairs(tmp_path / "missing.jsonl")


def test_tokenizer_without_chat_template_is_an_input_error():
    plain = factories.make_tokenizer(chat_template=None)
    with pytest.raises(InputError, match="no chat template"):
        calib.encode_pair(plain, "a", "b", max_length=32)


def test_default_calibration_set_is_shipped_and_valid(tok):
    path = calib.default_calibration_path()
    pairs = calib.load_pairs(path)
    assert len(pairs) >= 150
    assert len(calib.encode_pairs(tok, pairs, samples=10, max_length=256, seed=42)) == 10


def test_generated_pairs_are_greedy_and_deterministic(tiny_adapters, tmp_path):
    from mlflow_nlsr.io import read_adapter
    from mlflow_nlsr.pipeline.loading import load_adapted_model, load_tokenizer

    base, aligned, _ = tiny_adapters
    adapter = read_adapter(aligned)
    model = load_adapted_model(base, adapter.config, adapter.tensors, torch.device("cpu"))
    tokenizer = load_tokenizer(base)
    prompts_file = tmp_path / "p.jsonl"
    prompts_file.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in ["one", "two words", "three"]))
    prompts = calib.load_prompts(prompts_file)
    first = calib.generate_pairs(model, tokenizer, prompts, max_new_tokens=6, batch_size=2)
    again = calib.generate_pairs(model, tokenizer, prompts, max_new_tokens=6, batch_size=3)
    assert first == again
    assert [p["prompt"] for p in first] == [p for p in prompts if p in {q["prompt"] for q in first}]
    assert all(p["response"] for p in first)
