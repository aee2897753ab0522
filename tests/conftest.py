"""Shared fixtures: tiny random models and adapters built locally (session-scoped), offline env."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from tests import factories  # noqa: E402


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory):
    """A random 4-layer Llama (hidden 64) with a byte-level ChatML tokenizer."""
    return factories.make_tiny_llama(tmp_path_factory.mktemp("base") / "model")


@pytest.fixture(scope="session")
def tiny_adapters(tiny_base, tmp_path_factory):
    """(base, aligned, finetuned) where the fine-tuned adapter continues the aligned one."""
    root = tmp_path_factory.mktemp("adapters")
    aligned = factories.make_lora_adapter(tiny_base, root / "aligned", seed=1)
    finetuned = factories.continue_adapter(tiny_base, aligned, root / "finetuned", drift=0.03, seed=2)
    return tiny_base, aligned, finetuned
