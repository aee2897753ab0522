"""A small LoRA SFT loop for the demo: alignment (fresh adapter) and the attack (continued adapter).

Recipe (feasibility.md, "Stages"): LoRA r=8, alpha=16, dropout 0 on q,k,v,o,gate,up,down; AdamW; cosine
schedule with 10% warm-up; batch 8; loss on the response tokens only, in the model's chat template.
Continuing an adapter (``init_adapter``) resumes training of its own factors, as LLaMA-Factory does
with ``adapter_name_or_path`` in the official code (spec §1.2), so NLSR can compare factor by factor.
One torch thread: two threads on two shared cores were ~5x slower (feasibility.md, threading trap).
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mlflow_nlsr.errors import InputError

LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
IGNORE = -100


@dataclass(frozen=True)
class Encoded:
    """One tokenised training example: ``labels`` is -100 on prompt tokens."""

    input_ids: list[int]
    labels: list[int]


def chat_prompt(tokenizer: Any, prompt: str) -> str:
    """Return ``prompt`` as a user turn in the tokenizer's chat template, ending at the assistant header."""
    if not getattr(tokenizer, "chat_template", None):
        raise InputError("the demo model's tokenizer has no chat template; expected an instruct model")
    messages = [{"role": "user", "content": prompt}]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def encode_pair(tokenizer: Any, prompt: str, response: str, max_length: int) -> Encoded:
    """Tokenise (prompt, response) in the chat template, masking the prompt with -100 in the labels."""
    head = chat_prompt(tokenizer, prompt)
    messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}]
    full = tokenizer.apply_chat_template(messages, tokenize=False)
    if not full.startswith(head):
        raise InputError("the chat template does not render the prompt as a prefix of the full dialogue")
    prompt_ids = tokenizer(head, add_special_tokens=False)["input_ids"]
    response_ids = tokenizer(full[len(head) :], add_special_tokens=False)["input_ids"]
    ids = (prompt_ids + response_ids)[:max_length]
    labels = ([IGNORE] * len(prompt_ids) + response_ids)[:max_length]
    return Encoded(ids, labels)


def collate(batch: list[Encoded], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a batch into input_ids, attention_mask and labels tensors of shape (B, T)."""
    width = max(len(e.input_ids) for e in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, e in enumerate(batch):
        n = len(e.input_ids)
        ids[row, :n] = torch.tensor(e.input_ids)
        labels[row, :n] = torch.tensor(e.labels)
        mask[row, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


@contextmanager
def torch_threads(n: int):  # type: ignore[no-untyped-def]
    """Run the block with ``n`` torch threads, restoring the previous setting afterwards."""
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def lora_model(base: Any, init_adapter: Path | None, seed: int) -> Any:
    """Wrap ``base`` in a trainable LoRA: fresh (seeded init) or continuing ``init_adapter``."""
    from peft import LoraConfig, PeftModel, get_peft_model

    if init_adapter is not None:
        if not (Path(init_adapter) / "adapter_config.json").is_file():
            raise InputError(
                f"expected a PEFT adapter dir to continue, found no adapter_config.json in {init_adapter}"
            )
        return PeftModel.from_pretrained(base, str(init_adapter), is_trainable=True)
    torch.manual_seed(seed)
    cfg = LoraConfig(
        r=8,
        lora_alpha=16,
        lora_dropout=0.0,
        target_modules=list(LORA_TARGETS),
        bias="none",
        task_type="CAUSAL_LM",
    )
    return get_peft_model(base, cfg)


def cosine_with_warmup(optimizer: torch.optim.Optimizer, total: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Return a cosine schedule over ``total`` steps after a linear warm-up of 10% of them."""
    # Warm-up starts at lr/(w+1), not 0: with a handful of steps a zero-lr first step would be wasted.
    warmup = math.ceil(0.1 * total)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def shuffled_batches(n: int, batch_size: int, epochs: int, seed: int) -> Iterator[list[int]]:
    """Yield each batch's example indices: ``epochs`` passes over ``range(n)``, each reshuffled (seeded)."""
    order = random.Random(seed)
    for _ in range(epochs):
        idx = list(range(n))
        order.shuffle(idx)
        for s in range(0, n, batch_size):
            yield idx[s : s + batch_size]


def optimizer_step(params: list[torch.nn.Parameter], optimizer: torch.optim.Optimizer, schedule: Any) -> None:
    """Clip the gradients to norm 1, step the optimizer and the schedule, and clear the gradients."""
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    optimizer.step()
    schedule.step()
    optimizer.zero_grad(set_to_none=True)


def train_lora(
    base_dir: Path | str,
    examples: list[tuple[str, str]],
    out_dir: Path | str,
    *,
    init_adapter: Path | str | None = None,
    epochs: int = 3,
    lr: float = 3e-4,
    seed: int = 0,
    max_length: int = 256,
    batch_size: int = 8,
    threads: int = 1,
    progress: bool = True,
) -> Path:
    """Train a LoRA on (prompt, response) pairs, save the PEFT adapter and train_log.json to ``out_dir``."""
    from tqdm.auto import tqdm
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not examples:
        raise InputError("train_lora needs at least one (prompt, response) example, found none")
    if epochs < 1 or batch_size < 1 or max_length < 2:
        raise InputError(
            "expected epochs >= 1, batch_size >= 1 and max_length >= 2, "
            f"found {epochs}, {batch_size}, {max_length}"
        )
    out = Path(out_dir)
    start = time.perf_counter()
    with torch_threads(threads):
        tok = AutoTokenizer.from_pretrained(str(base_dir))
        pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        data = [encode_pair(tok, p, r, max_length) for p, r in examples]
        data = [e for e in data if any(t != IGNORE for t in e.labels)]
        if not data:
            raise InputError(f"no example keeps a response token within max_length={max_length}")
        base = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=torch.float32)
        model = lora_model(base, Path(init_adapter) if init_adapter else None, seed)
        model.train()
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
        steps_per_epoch = math.ceil(len(data) / batch_size)
        schedule = cosine_with_warmup(optimizer, steps_per_epoch * epochs)
        losses: list[float] = []
        bar = tqdm(total=steps_per_epoch * epochs, desc=f"LoRA {out.name}", disable=not progress)
        for chunk in shuffled_batches(len(data), batch_size, epochs, seed):
            loss = model(**collate([data[i] for i in chunk], pad_id)).loss
            loss.backward()
            optimizer_step(params, optimizer, schedule)
            losses.append(round(float(loss.detach()), 5))
            bar.update(1)
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
        bar.close()
        model.save_pretrained(str(out))
    log = {
        "examples": len(data),
        "dropped": len(examples) - len(data),
        "epochs": epochs,
        "steps": len(losses),
        "batch_size": batch_size,
        "lr": lr,
        "seed": seed,
        "max_length": max_length,
        "init_adapter": str(init_adapter) if init_adapter else None,
        "losses": losses,
        "seconds": round(time.perf_counter() - start, 2),
    }
    (out / "train_log.json").write_text(json.dumps(log, indent=2))
    return out
