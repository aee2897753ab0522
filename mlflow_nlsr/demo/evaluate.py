"""Greedy, batched, left-padded generation in the chat template: the demo's in-process model calls.

Only what the stages need (the attack's compliant answers, quick checks while developing). The official
safety and utility numbers come from the lm-eval gates (mlflow_nlsr.gates), not from here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from mlflow_nlsr.demo.train import chat_prompt, torch_threads
from mlflow_nlsr.errors import InputError


def load_model(model_dir: Path | str, adapter: Path | str | None = None) -> tuple[Any, Any]:
    """Return (tokenizer with left padding, fp32 eval model), with ``adapter`` merged in if given."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(model_dir))
    tok.padding_side = "left"
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    if adapter is not None:
        from peft import PeftModel

        if not (Path(adapter) / "adapter_config.json").is_file():
            raise InputError(f"expected a PEFT adapter dir, found no adapter_config.json in {adapter}")
        model = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    return tok, model.eval()


@torch.no_grad()
def generate_with(
    tok: Any,
    model: Any,
    prompts: list[str],
    *,
    max_new_tokens: int = 64,
    batch_size: int = 16,
    progress: bool = False,
) -> list[str]:
    """Return the greedy completion of each prompt (as a user turn), decoded without special tokens."""
    from tqdm.auto import tqdm

    texts = [chat_prompt(tok, p) for p in prompts]
    out: list[str] = []
    starts = range(0, len(texts), batch_size)
    for s in tqdm(starts, desc="generate", disable=not progress):
        enc = tok(texts[s : s + batch_size], return_tensors="pt", padding=True, add_special_tokens=False)
        ids = model.generate(
            **enc,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=tok.pad_token_id,
        )
        new = ids[:, enc["input_ids"].shape[1] :]
        out.extend(t.strip() for t in tok.batch_decode(new, skip_special_tokens=True))
    return out


def generate(
    model_dir: Path | str,
    prompts: list[str],
    adapter: Path | str | None = None,
    *,
    max_new_tokens: int = 64,
    batch_size: int = 16,
    threads: int = 1,
    progress: bool = False,
) -> list[str]:
    """Load ``model_dir`` (+ ``adapter``) and return its greedy chat completion of each prompt."""
    with torch_threads(threads):
        tok, model = load_model(model_dir, adapter)
        return generate_with(
            tok, model, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size, progress=progress
        )
