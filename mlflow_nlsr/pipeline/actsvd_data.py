"""Calibration data for actsvd (spec §1.4a): chat-rendered (prompt, response) pairs, response tokens only."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mlflow_nlsr.errors import CalibrationError, InputError
from mlflow_nlsr.io.jsonl import read_jsonl

IGNORE_INDEX = -100
DEFAULT_CALIBRATION = "calibration_safety.jsonl"


@dataclass(frozen=True)
class CalibrationSample:
    """One tokenised sample: ``input_ids`` [T] and ``labels`` [T] (-100 on prompt tokens)."""

    input_ids: torch.Tensor
    labels: torch.Tensor


def default_calibration_path() -> Path:
    """Path of the calibration set shipped with the package (mlflow_nlsr/data/calibration_safety.jsonl)."""
    path = Path(__file__).resolve().parent.parent / "data" / DEFAULT_CALIBRATION
    if not path.is_file():
        raise CalibrationError(
            f"the default calibration set {path} is missing from this installation; "
            'pass --calibration FILE.jsonl with {"prompt", "response"} lines'
        )
    return path


def _read_jsonl(path: str | Path, required: tuple[str, ...]) -> list[dict[str, str]]:
    rows = read_jsonl(
        path,
        required=dict.fromkeys(required, str),
        what="calibration file",
        error=CalibrationError,
        at="{path} line {line}",
        nonempty=True,
        unit="samples",
    )
    return [{key: row[key] for key in required} for row in rows]


def load_pairs(path: str | Path) -> list[dict[str, str]]:
    """Read a JSONL of {"prompt", "response"} objects (CalibrationError names the bad line)."""
    return _read_jsonl(path, ("prompt", "response"))


def load_prompts(path: str | Path) -> list[str]:
    """Read a JSONL of {"prompt"} objects."""
    return [row["prompt"] for row in _read_jsonl(path, ("prompt",))]


def _require_template(tokenizer: Any) -> None:
    if not getattr(tokenizer, "chat_template", None):
        raise InputError(
            "the base model's tokenizer has no chat template, so calibration prompts cannot be rendered "
            "the way the model is used; add a chat_template to the tokenizer or use a data-free scorer "
            "(--scorer magnitude or weight-lowrank)"
        )


def _ids(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def render_prompt(tokenizer: Any, prompt: str) -> str:
    """The chat-template text of a user `prompt`, ending with the assistant generation prompt."""
    _require_template(tokenizer)
    messages = [{"role": "user", "content": prompt}]
    return str(tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))


def encode_pair(tokenizer: Any, prompt: str, response: str, max_length: int) -> CalibrationSample | None:
    """Tokenise one pair with the chat template; None when truncation leaves no response token."""
    prompt_text = render_prompt(tokenizer, prompt)
    messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}]
    full_ids = _ids(tokenizer, str(tokenizer.apply_chat_template(messages, tokenize=False)))
    prompt_ids = _ids(tokenizer, prompt_text)
    if full_ids[: len(prompt_ids)] != prompt_ids:
        # the template rewrites the prompt part when a response follows: append the raw response instead
        eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
        full_ids = prompt_ids + _ids(tokenizer, response) + eos
    full_ids = full_ids[:max_length]
    labels = [IGNORE_INDEX] * min(len(prompt_ids), len(full_ids)) + full_ids[len(prompt_ids) :]
    if all(label == IGNORE_INDEX for label in labels):
        return None
    return CalibrationSample(torch.tensor(full_ids, dtype=torch.long), torch.tensor(labels, dtype=torch.long))


def _subsample(items: list[Any], samples: int, seed: int) -> list[Any]:
    order = list(range(len(items)))
    random.Random(seed).shuffle(order)
    return [items[i] for i in order[:samples]]


def encode_pairs(
    tokenizer: Any, pairs: list[dict[str, str]], *, samples: int, max_length: int, seed: int
) -> list[CalibrationSample]:
    """Seeded shuffle, take `samples` pairs, tokenise; CalibrationError if none has a response token."""
    chosen = _subsample(pairs, samples, seed)
    encoded = [encode_pair(tokenizer, p["prompt"], p["response"], max_length) for p in chosen]
    kept = [e for e in encoded if e is not None]
    if not kept:
        raise CalibrationError(
            f"no calibration sample keeps a response token within max_length={max_length}; "
            "raise --max-length or shorten the prompts"
        )
    return kept


@torch.no_grad()
def generate_pairs(
    model: Any, tokenizer: Any, prompts: list[str], *, max_new_tokens: int, batch_size: int = 8
) -> list[dict[str, str]]:
    """Greedy responses of `model` to `prompts` (the official recipe: the reference model answers itself)."""
    device = next(model.parameters()).device
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    pairs: list[dict[str, str]] = []
    for start in range(0, len(prompts), batch_size):
        chunk = prompts[start : start + batch_size]
        encoded = [_ids(tokenizer, render_prompt(tokenizer, p)) for p in chunk]
        width = max(len(e) for e in encoded)
        ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, e in enumerate(encoded):  # left padding for generation
            ids[row, width - len(e) :] = torch.tensor(e)
            mask[row, width - len(e) :] = 1
        out = model.generate(
            input_ids=ids.to(device),
            attention_mask=mask.to(device),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=pad_id,
        )
        for prompt, row in zip(chunk, out[:, width:], strict=True):
            text = tokenizer.decode(row, skip_special_tokens=True).strip()
            if text:
                pairs.append({"prompt": prompt, "response": text})
    if not pairs:
        raise CalibrationError(
            "the reference model generated only empty responses to the calibration prompts"
        )
    return pairs


def select_prompts(prompts: list[str], *, samples: int, seed: int) -> list[str]:
    """The seeded subset of prompts to generate responses for."""
    return _subsample(prompts, samples, seed)
