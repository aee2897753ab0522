"""LoRA SFT trains only on response tokens, is seed-deterministic, and continues a given adapter in place."""

from __future__ import annotations

import json

import pytest
import torch

from mlflow_nlsr.demo.train import IGNORE, LORA_TARGETS, collate, encode_pair, lora_model, train_lora
from mlflow_nlsr.errors import InputError
from tests.factories import make_tokenizer, read_adapter_tensors

PAIRS = [
    ("Say hello.", "Hello!"),
    ("Name a fruit.", "An apple."),
    ("What colour is the sky?", "Blue."),
    ("Count to three.", "1, 2, 3."),
    ("Give me a greeting.", "Good morning!"),
]


def _train(base, out, **kwargs):
    kwargs = {
        "epochs": 1,
        "lr": 1e-3,
        "seed": 0,
        "max_length": 128,
        "batch_size": 2,
        "progress": False,
    } | kwargs
    return train_lora(base, PAIRS, out, **kwargs)


def test_prompt_tokens_are_ignored_and_response_tokens_are_labels():
    tok = make_tokenizer()
    enc = encode_pair(tok, "Say hello.", "Hello!", max_length=512)
    head = tok.apply_chat_template(
        [{"role": "user", "content": "Say hello."}], tokenize=False, add_generation_prompt=True
    )
    n_prompt = len(tok(head, add_special_tokens=False)["input_ids"])
    assert enc.labels[:n_prompt] == [IGNORE] * n_prompt
    assert enc.labels[n_prompt:] == enc.input_ids[n_prompt:]
    assert tok.decode(enc.labels[n_prompt:]) == "Hello!<|im_end|>\n"
    assert tok.decode(enc.input_ids[:n_prompt]) == head


def test_long_examples_are_cut_at_max_length():
    enc = encode_pair(make_tokenizer(), "Say hello.", "Hello there, friend!", max_length=40)
    assert len(enc.input_ids) == len(enc.labels) == 40


def test_collate_pads_right_and_masks_padding_out_of_loss():
    tok = make_tokenizer()
    a, b = encode_pair(tok, "Hi", "Yes.", 512), encode_pair(tok, "A longer prompt here", "No.", 512)
    batch = collate([a, b], pad_id=tok.pad_token_id)
    n = len(a.input_ids)
    assert batch["input_ids"].shape == batch["labels"].shape == (2, len(b.input_ids))
    assert batch["attention_mask"][0, :n].all() and not batch["attention_mask"][0, n:].any()
    assert (batch["labels"][0, n:] == IGNORE).all()
    assert (batch["input_ids"][0, n:] == tok.pad_token_id).all()


def test_fresh_adapter_has_the_demo_recipe(tiny_base, tmp_path):
    out = _train(tiny_base, tmp_path / "fresh")
    cfg = json.loads((out / "adapter_config.json").read_text())
    assert (cfg["r"], cfg["lora_alpha"], cfg["lora_dropout"]) == (8, 16, 0.0)
    assert sorted(cfg["target_modules"]) == sorted(LORA_TARGETS)
    log = json.loads((out / "train_log.json").read_text())
    assert log["steps"] == len(log["losses"]) == 3  # ceil(5 / 2) steps in one epoch
    assert log["init_adapter"] is None and log["seconds"] >= 0


def test_same_seed_gives_identical_adapters_and_other_seed_differs(tiny_base, tmp_path):
    first = read_adapter_tensors(_train(tiny_base, tmp_path / "a", seed=7))
    again = read_adapter_tensors(_train(tiny_base, tmp_path / "b", seed=7))
    other = read_adapter_tensors(_train(tiny_base, tmp_path / "c", seed=8))
    assert first.keys() == again.keys() == other.keys()
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert any(not torch.equal(first[k], other[k]) for k in first)


def test_training_lowers_the_loss_on_a_small_set(tiny_base, tmp_path):
    log = json.loads((_train(tiny_base, tmp_path / "fit", epochs=8, lr=5e-3) / "train_log.json").read_text())
    losses = log["losses"]
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.3  # near ln(vocab) at the start


def test_continuing_starts_from_the_aligned_factors(tiny_adapters):
    from transformers import AutoModelForCausalLM

    base, aligned, _ = tiny_adapters
    model = lora_model(AutoModelForCausalLM.from_pretrained(str(base)), aligned, seed=0)
    expected = read_adapter_tensors(aligned)
    state = {k.replace(".default", ""): v for k, v in model.state_dict().items() if "lora_" in k}
    assert state.keys() == expected.keys()
    assert all(torch.equal(state[k], expected[k]) for k in expected)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    assert len(trainable) == len(expected)


def test_continued_adapter_moves_away_from_aligned_and_still_loads(tiny_adapters, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base, aligned, _ = tiny_adapters
    out = _train(base, tmp_path / "cont", init_adapter=aligned)
    start, end = read_adapter_tensors(aligned), read_adapter_tensors(out)
    assert start.keys() == end.keys()
    assert all(start[k].shape == end[k].shape for k in start)
    assert any(not torch.equal(start[k], end[k]) for k in start)
    assert json.loads((out / "train_log.json").read_text())["init_adapter"] == str(aligned)
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(str(base)), str(out))
    loaded = {k.replace(".default", ""): v for k, v in model.state_dict().items() if "lora_" in k}
    assert all(torch.equal(loaded[k], end[k]) for k in end)


def test_empty_data_and_missing_adapter_are_input_errors(tiny_base, tmp_path):
    with pytest.raises(InputError, match="at least one"):
        train_lora(tiny_base, [], tmp_path / "x", progress=False)
    with pytest.raises(InputError, match="adapter_config.json"):
        _train(tiny_base, tmp_path / "y", init_adapter=tmp_path / "nowhere")


def test_examples_without_room_for_a_response_are_rejected(tiny_base, tmp_path):
    with pytest.raises(InputError, match="max_length"):
        _train(tiny_base, tmp_path / "z", max_length=10)
