"""Preference training for the demo's reference: DPO with an NLL term on the chosen answer (RPO).

The SFT reference (:mod:`mlflow_nlsr.demo.train`) learns *what* to say but never *against* what: five
SFT recipes still refused 16–21 % of the edgy-benign suite (docs/demo.md, "Choosing the alignment").
Direct Preference Optimization (Rafailov et al., 2023) trains on (prompt, chosen, rejected) triples:
here a helpful answer preferred over a refusal for benign and edgy-benign prompts, and a refusal
preferred over the unaligned model's compliant answer for harmful ones. The NLL term on the chosen
answer (Pang et al., 2024, "RPO") keeps the chosen answers likely, not only more likely than the
rejected ones.

The reference policy of DPO is the model the training starts from (the base, or ``init_adapter``):
its log-probabilities are computed once, before the first step, from the same weights.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from mlflow_nlsr.demo import data
from mlflow_nlsr.demo.train import (
    IGNORE,
    Encoded,
    collate,
    cosine_with_warmup,
    encode_pair,
    lora_model,
    optimizer_step,
    shuffled_batches,
    torch_threads,
)
from mlflow_nlsr.errors import InputError

FIELDS = ("prompt", "response")
#: words that make a first sentence a decline ("I'm sorry you're going through this." is not one)
DECLINE_WORDS = ("can't", "cannot", "won't", "will not", "not able", "unable", "not something")


@dataclass(frozen=True)
class PreferencePair:
    """One preference example: ``chosen`` is the answer to prefer over ``rejected`` for ``prompt``."""

    prompt: str
    chosen: str
    rejected: str


@dataclass(frozen=True)
class PreferenceSettings:
    """Hyperparameters of :func:`train_lora_preference` (``beta``: DPO temperature)."""

    epochs: int = 2
    lr: float = 2e-4
    beta: float = 0.1
    nll_weight: float = 1.0
    seed: int = 0
    max_length: int = 256
    batch_size: int = 8
    threads: int = 1
    progress: bool = True


def refusal_openers(refusals: list[str]) -> list[str]:
    """Return the distinct first sentences of ``refusals``: the bare declines the SFT reference learned."""
    openers = {text.split(". ")[0].rstrip(".") + "." for text in refusals if text.strip()}
    return sorted(o for o in openers if any(word in o.lower() for word in DECLINE_WORDS))


def harmful_pairs(sizes: data.AlignSizes, root: Path | str | None = None) -> list[data.Pair]:
    """Return the (harmful prompt, shipped refusal) rows of the alignment data at ``sizes.harmful``."""
    return data.align_pairs(data.AlignSizes(sizes.harmful, 0, 0, 0), root)


def preference_pairs(
    sizes: data.AlignSizes,
    compliant: dict[str, str],
    root: Path | str | None = None,
    seed: int = 0,
    *,
    extra_edgy: bool = False,
) -> list[PreferencePair]:
    """Return the alignment data as preference pairs.

    Harmful prompts prefer the shipped refusal over ``compliant[prompt]`` (the unaligned model's answer;
    prompts without one are skipped); every other prompt prefers the shipped answer over a bare decline
    drawn (seeded) from the refusals' openers. ``extra_edgy`` adds every row of ``align_edgy_extra.jsonl``
    after the edgy-benign rows (the order of bench/alignment.py v5, which appends them to that file).
    """
    harmful = harmful_pairs(sizes, root)
    helpful = data.align_pairs(data.AlignSizes(0, sizes.benign, sizes.edgy, 0), root)
    if extra_edgy:
        extra = data.load_jsonl(data.ALIGN_EDGY_EXTRA, FIELDS, root)
        helpful += [(r["prompt"], r["response"]) for r in extra]
    helpful += data.align_pairs(data.AlignSizes(0, 0, 0, sizes.instructions), root)
    declines = refusal_openers([r for _, r in harmful])
    if not declines:
        raise InputError("preference pairs need refusals to draw declines from; the harmful data has none")
    draw = random.Random(seed)
    pairs = [PreferencePair(p, r, compliant[p]) for p, r in harmful if compliant.get(p, "").strip()]
    pairs += [PreferencePair(p, r, draw.choice(declines)) for p, r in helpful]
    return pairs


def judged_compliant(prompts: list[str], answers: list[str]) -> dict[str, str]:
    """Return ``{prompt: answer}`` of the answers the decline judge calls compliance (DPO's rejected)."""
    from mlflow_nlsr.gates.judges import COMPLIANCE, load_judge

    judge = load_judge("decline")
    return {p: a for p, a in zip(prompts, answers, strict=True) if judge.classify(p, a) == COMPLIANCE}


def sequence_logps(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum of the label tokens' log-probabilities per sequence, and their count.

    Args:
        logits: (B, T, V) next-token logits of a causal LM.
        labels: (B, T) token ids, ``-100`` where a position is not scored (prompt, padding).

    Returns:
        (B,) summed log-probabilities and (B,) number of scored tokens; position t predicts label t+1.

    """
    targets = labels[:, 1:]
    mask = targets != IGNORE
    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    picked = torch.gather(logp, 2, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return (picked * mask).sum(-1), mask.sum(-1)


def dpo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    beta: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """DPO loss ``-log σ(β((π_c − r_c) − (π_r − r_r)))`` and the implicit reward margins.

    Args:
        policy_chosen: (B,) summed log-probabilities of the chosen answers under the trained policy.
        policy_rejected: (B,) the same for the rejected answers.
        ref_chosen: (B,) the chosen answers under the frozen reference.
        ref_rejected: (B,) the rejected answers under the frozen reference.
        beta: the temperature; larger keeps the policy closer to the reference.

    Returns:
        The mean loss (scalar) and the (B,) reward margins ``β((π_c − r_c) − (π_r − r_r))``.

    """
    margins = beta * ((policy_chosen - ref_chosen) - (policy_rejected - ref_rejected))
    return -torch.nn.functional.logsigmoid(margins).mean(), margins.detach()


def _encode(tok: Any, pairs: list[PreferencePair], max_length: int) -> list[tuple[Encoded, Encoded]]:
    out = []
    for pair in pairs:
        chosen = encode_pair(tok, pair.prompt, pair.chosen, max_length)
        rejected = encode_pair(tok, pair.prompt, pair.rejected, max_length)
        if any(t != IGNORE for t in chosen.labels) and any(t != IGNORE for t in rejected.labels):
            out.append((chosen, rejected))
    if not out:
        raise InputError(f"no preference pair keeps response tokens within max_length={max_length}")
    return out


def _logps(model: Any, batch: list[tuple[Encoded, Encoded]], pad_id: int) -> tuple[torch.Tensor, ...]:
    """Return (chosen logps, rejected logps, chosen token counts) for ``batch`` in one forward pass."""
    tensors = collate([c for c, _ in batch] + [r for _, r in batch], pad_id)
    logits = model(input_ids=tensors["input_ids"], attention_mask=tensors["attention_mask"]).logits
    logps, counts = sequence_logps(logits, tensors["labels"])
    n = len(batch)
    return logps[:n], logps[n:], counts[:n]


@torch.no_grad()
def _reference_logps(model: Any, data: list, pad_id: int, batch_size: int) -> list[tuple[float, float]]:
    model.eval()
    out: list[tuple[float, float]] = []
    for s in range(0, len(data), batch_size):
        chosen, rejected, _ = _logps(model, data[s : s + batch_size], pad_id)
        out.extend(zip(chosen.tolist(), rejected.tolist(), strict=True))
    model.train()
    return out


def train_lora_preference(
    base_dir: Path | str,
    pairs: list[PreferencePair],
    out_dir: Path | str,
    settings: PreferenceSettings,
    *,
    init_adapter: Path | str | None = None,
) -> Path:
    """Train a LoRA on preference ``pairs``; write it and train_log.json to ``out_dir``."""
    from tqdm.auto import tqdm
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if settings.epochs < 1 or settings.batch_size < 1:
        raise InputError(
            f"expected epochs >= 1 and batch_size >= 1, found {settings.epochs}, {settings.batch_size}"
        )
    out, start, s = Path(out_dir), time.perf_counter(), settings
    with torch_threads(s.threads):
        tok = AutoTokenizer.from_pretrained(str(base_dir))
        pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        data = _encode(tok, pairs, s.max_length)
        base = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=torch.float32)
        model = lora_model(base, Path(init_adapter) if init_adapter else None, s.seed)
        reference = _reference_logps(model, data, pad_id, s.batch_size)
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=s.lr, weight_decay=0.0)
        steps = math.ceil(len(data) / s.batch_size) * s.epochs
        schedule = cosine_with_warmup(optimizer, steps)
        log: list[dict[str, float]] = []
        bar = tqdm(total=steps, desc=f"DPO {out.name}", disable=not s.progress)
        for chunk in shuffled_batches(len(data), s.batch_size, s.epochs, s.seed):
            log.append(_step(model, [data[i] for i in chunk], [reference[i] for i in chunk], pad_id, s))
            optimizer_step(params, optimizer, schedule)
            bar.update(1)
            bar.set_postfix(loss=f"{log[-1]['loss']:.3f}", acc=f"{log[-1]['accuracy']:.2f}")
        bar.close()
        model.save_pretrained(str(out))
    info = {"examples": len(data), "dropped": len(pairs) - len(data), "steps": len(log), **asdict(s),
            "init_adapter": str(init_adapter) if init_adapter else None, "log": log,
            "seconds": round(time.perf_counter() - start, 2)}  # fmt: skip
    (out / "train_log.json").write_text(json.dumps(info, indent=2))
    return out


def _step(model: Any, batch: list, reference: list, pad_id: int, s: PreferenceSettings) -> dict[str, float]:
    """One backward pass of DPO + ``nll_weight`` × per-token NLL of the chosen answers; its numbers."""
    chosen, rejected, counts = _logps(model, batch, pad_id)
    ref = torch.tensor(reference)
    dpo, margins = dpo_loss(chosen, rejected, ref[:, 0], ref[:, 1], s.beta)
    nll = -(chosen / counts.clamp(min=1)).mean()
    loss = dpo + s.nll_weight * nll
    loss.backward()
    return {
        "loss": round(float(loss.detach()), 5),
        "dpo": round(float(dpo.detach()), 5),
        "nll": round(float(nll.detach()), 5),
        "margin": round(float(margins.mean()), 5),
        "accuracy": round(float((margins > 0).float().mean()), 4),
    }
