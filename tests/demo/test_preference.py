"""DPO prefers the chosen answer: the paper's loss, pairs from the shipped data, margins that widen."""

from __future__ import annotations

import json
import math

import pytest
import torch

from mlflow_nlsr.demo.data import AlignSizes
from mlflow_nlsr.demo.preference import (
    PreferencePair,
    PreferenceSettings,
    dpo_loss,
    preference_pairs,
    refusal_openers,
    sequence_logps,
    train_lora_preference,
)
from mlflow_nlsr.demo.train import IGNORE
from mlflow_nlsr.errors import InputError

PAIRS = [
    PreferencePair("Say hello.", "Hello!", "I can't help with that."),
    PreferencePair("Name a fruit.", "An apple.", "I won't help with that."),
    PreferencePair("How do I steal a car?", "I can't help with that.", "Break the window and hotwire it."),
    PreferencePair("Count to three.", "1, 2, 3.", "I'm unable to help with that request."),
]


def test_sequence_logps_sums_only_the_labelled_next_tokens():
    logits = torch.log(torch.tensor([[[0.5, 0.25, 0.25], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6]]]))
    labels = torch.tensor([[IGNORE, 1, 2]])
    total, count = sequence_logps(logits, labels)
    assert count.tolist() == [2]
    assert total.item() == pytest.approx(math.log(0.25) + math.log(0.1), abs=1e-6)


def test_dpo_loss_is_log2_at_the_reference_and_falls_as_the_chosen_answer_gains():
    zero = torch.zeros(3)
    loss, margins = dpo_loss(zero, zero, zero, zero, beta=0.1)
    assert loss.item() == pytest.approx(math.log(2)) and margins.tolist() == [0.0, 0.0, 0.0]
    better, margins = dpo_loss(torch.full((3,), 5.0), zero, zero, zero, beta=0.1)
    assert better.item() < math.log(2) and margins.tolist() == pytest.approx([0.5, 0.5, 0.5])
    # only the change against the reference counts: a rejected answer already unlikely earns nothing
    same, _ = dpo_loss(zero, torch.full((3,), -9.0), zero, torch.full((3,), -9.0), beta=0.1)
    assert same.item() == pytest.approx(math.log(2))


def test_openers_keep_only_first_sentences_that_decline():
    refusals = [
        "I can't help with that. Please call a doctor.",
        "I'm sorry you're going through this. Call 988.",
        "I won't help with this, since it could cause real harm.",
    ]
    assert refusal_openers(refusals) == [
        "I can't help with that.",
        "I won't help with this, since it could cause real harm.",
    ]


def test_harmful_prompts_prefer_refusal_and_the_rest_prefer_the_answer(tiny_data):
    compliant = {"How do I pick a lock to break into a house?": "Use a tension wrench and a pick."}
    pairs = preference_pairs(AlignSizes(), compliant, tiny_data, seed=0)
    harmful = [p for p in pairs if p.prompt in compliant]
    assert harmful == [
        PreferencePair(
            "How do I pick a lock to break into a house?",
            "I can't help with breaking into homes.",
            "Use a tension wrench and a pick.",
        )
    ]
    helpful = [p for p in pairs if p.prompt not in compliant]
    assert [p.chosen for p in helpful][:2] == ["Boil it for nine minutes.", "Red."]
    assert len(helpful) == 3 + 2 + 1  # benign, edgy, instructions; harmful prompts without an answer skipped
    openers = set(
        refusal_openers(
            [
                "I can't help with breaking into homes.",
                "I won't help with phishing.",
                "Sorry, I can't help with weapons.",
            ]
        )
    )
    assert all(p.rejected in openers for p in helpful)
    assert pairs == preference_pairs(AlignSizes(), compliant, tiny_data, seed=0)


def test_training_widens_the_margin_towards_the_chosen_answers(tiny_base, tmp_path):
    settings = PreferenceSettings(
        epochs=6, lr=5e-3, beta=0.5, nll_weight=0.0, batch_size=2, max_length=128, progress=False
    )
    out = train_lora_preference(tiny_base, PAIRS, tmp_path / "dpo", settings)
    log = json.loads((out / "train_log.json").read_text())
    assert (out / "adapter_model.safetensors").is_file() and log["steps"] == 12 and log["examples"] == 4
    assert log["log"][0]["margin"] == pytest.approx(0.0, abs=1e-4)  # the policy starts as the reference
    assert log["log"][-1]["margin"] > 0.5 and log["log"][-1]["accuracy"] == 1.0


def test_no_usable_pair_is_an_input_error(tiny_base, tmp_path):
    with pytest.raises(InputError, match="max_length"):
        train_lora_preference(
            tiny_base, PAIRS, tmp_path / "x", PreferenceSettings(max_length=2, progress=False)
        )
