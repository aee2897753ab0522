"""Block-sequential ActSVD on the LoRA factors of base + reference adapter (spec §1.4b).

Jobs run it one decoder block in memory (``lora_blockwise``, bit-identical on the CPU); the whole-PEFT-
model path below serves DoRA / fan-in-fan-out adapters and ``bench/actsvd_scaling.py``'s comparison.

For every decoder block in order: collect the Gram matrix of each LoRA factor's input at response tokens
(lora_A sees the module input, lora_B the lora_A output), project every factor of the block with
``core.actsvd_project``, write it back in place, then recompute the block's outputs so later blocks are
calibrated on the already-projected earlier blocks. The inputs of block 0 are captured once per batch
with a pre-hook that stops the forward; every block is then replayed on the stored hidden states.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mlflow_nlsr import core
from mlflow_nlsr.errors import CalibrationError, InputError
from mlflow_nlsr.io import sha256_file
from mlflow_nlsr.io.adapters import LoraAdapter
from mlflow_nlsr.options import RealignOptions
from mlflow_nlsr.pipeline import actsvd_data as calib
from mlflow_nlsr.pipeline.actsvd_data import IGNORE_INDEX, CalibrationSample
from mlflow_nlsr.pipeline.blockwise import BlockInputs, _StopForward, run_block
from mlflow_nlsr.pipeline.loading import (
    dtype_name,
    load_adapted_model,
    load_tokenizer,
    resolve_device,
    resolve_dtype,
)

CALIBRATION_BATCH_SIZE = 8


def lora_factors(block: nn.Module, prefix: str) -> dict[str, nn.Linear]:
    """The ``lora_A``/``lora_B`` "default" Linear layers of `block`, keyed by adapter tensor key."""
    found: dict[str, nn.Linear] = {}
    for name, module in block.named_modules():
        for factor in ("lora_A", "lora_B"):
            holder = getattr(module, factor, None)
            if isinstance(holder, nn.ModuleDict) and "default" in holder:
                linear = holder["default"]
                if isinstance(linear, nn.Linear):
                    found[f"{prefix}.{name}.{factor}.weight" if name else f"{prefix}.{factor}.weight"] = (
                        linear
                    )
    return found


def decoder_blocks(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """The ModuleList of decoder blocks (the longest ModuleList whose children hold LoRA factors)."""
    best: tuple[str, nn.ModuleList] | None = None
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) > 0:
            holds_lora = any(lora_factors(child, "") for child in module)
            if holds_lora and (best is None or len(module) > len(best[1])):
                best = (name, module)
    if best is None:
        raise InputError("could not find the decoder blocks holding the LoRA factors in the model")
    return best


def make_batches(
    samples: list[CalibrationSample], batch_size: int, pad_id: int
) -> list[dict[str, torch.Tensor]]:
    """Right-padded batches of input_ids, attention_mask and the response-token mask."""
    batches = []
    for start in range(0, len(samples), batch_size):
        chunk = samples[start : start + batch_size]
        width = max(int(s.input_ids.numel()) for s in chunk)
        ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
        attn = torch.zeros((len(chunk), width), dtype=torch.long)
        resp = torch.zeros((len(chunk), width), dtype=torch.bool)
        for row, s in enumerate(chunk):
            n = int(s.input_ids.numel())
            ids[row, :n], attn[row, :n] = s.input_ids, 1
            resp[row, :n] = s.labels != IGNORE_INDEX
        batches.append({"input_ids": ids, "attention_mask": attn, "response": resp})
    return batches


@torch.no_grad()
def capture_block_inputs(
    model: nn.Module, block: nn.Module, batches: list[dict[str, torch.Tensor]]
) -> list[BlockInputs]:
    """Run each batch only up to `block` (a pre-hook stops the forward) and keep what enters it."""
    device = next(model.parameters()).device
    captured: list[BlockInputs] = []
    current: dict[str, Any] = {}

    def hook(_module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        current["args"], current["kwargs"] = args, dict(kwargs)
        raise _StopForward

    handle = block.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        for batch in batches:
            current.clear()
            with suppress(_StopForward):
                model(
                    input_ids=batch["input_ids"].to(device),
                    attention_mask=batch["attention_mask"].to(device),
                    use_cache=False,
                )
            if "args" not in current:
                raise InputError("the model's forward never reached its first decoder block")
            captured.append(BlockInputs(current["args"], current["kwargs"], batch["response"].to(device)))
    finally:
        handle.remove()
    return captured


@contextmanager
def _gram_hooks(
    factors: dict[str, nn.Linear], grams: dict[str, torch.Tensor], state: dict[str, Any]
) -> Iterator[None]:
    handles = []

    def make(key: str) -> Callable[..., None]:
        def hook(_module: nn.Module, args: tuple[Any, ...], _out: Any) -> None:
            x = args[0][state["response"]]  # [n_response_tokens, d_in]
            gram = core.input_gram(x.reshape(-1, x.shape[-1]))
            grams[key] = grams[key] + gram if key in grams else gram

        return hook

    for key, linear in factors.items():
        handles.append(linear.register_forward_hook(make(key)))
    try:
        yield
    finally:
        for h in handles:
            h.remove()


@torch.no_grad()
def block_grams(
    block: nn.Module, factors: dict[str, nn.Linear], inputs: list[BlockInputs]
) -> dict[str, torch.Tensor]:
    """Gram (float64 [d_in, d_in]) of every factor's input at response tokens, summed over batches."""
    grams: dict[str, torch.Tensor] = {}
    state: dict[str, Any] = {}
    with _gram_hooks(factors, grams, state):
        for batch in inputs:
            state["response"] = batch.response
            run_block(block, batch)
    return grams


@torch.no_grad()
def actsvd_projections(
    model: nn.Module,
    batches: list[dict[str, torch.Tensor]],
    *,
    sparsity: float,
    variant: str,
    progress: bool = True,
) -> dict[str, torch.Tensor]:
    """Project every LoRA factor block by block, in place; return the projected weights {key: CPU tensor}."""
    from tqdm.auto import tqdm

    if not batches or not any(bool(b["response"].any()) for b in batches):
        raise CalibrationError("the calibration data holds no response tokens")
    prefix, blocks = decoder_blocks(model)
    states = capture_block_inputs(model, blocks[0], batches)
    projected: dict[str, torch.Tensor] = {}
    for index in tqdm(range(len(blocks)), desc="ActSVD blocks", disable=not progress, unit="block"):
        block = blocks[index]
        factors = lora_factors(block, f"{prefix}.{index}")
        grams = block_grams(block, factors, states)
        for key, linear in factors.items():
            d_out, d_in = linear.weight.shape
            keep = core.kept_rank(min(d_out, d_in), sparsity, variant)
            new = core.actsvd_project(linear.weight.detach().float(), grams[key], keep)
            linear.weight.data.copy_(new.to(linear.weight.dtype))
            projected[key] = new.cpu()
        if index + 1 < len(blocks):
            states = [s.with_hidden(run_block(block, s)) for s in states]
    return projected


def _calibration_samples(
    base: Path, model_factory: Any, options: RealignOptions, *, need_model: bool = True
) -> tuple[Any, list[calib.CalibrationSample], dict[str, Any]]:
    """Tokenised calibration samples (from JSONL, or generated by the reference model) and provenance."""
    tokenizer = load_tokenizer(base)
    calib.render_prompt(tokenizer, "check")  # fail early when there is no chat template
    n, length, seed = options.calibration_samples, options.max_length, options.seed
    if options.calibration_prompts:
        prompts = calib.select_prompts(calib.load_prompts(options.calibration_prompts), samples=n, seed=seed)
        model = model_factory()
        pairs = calib.generate_pairs(model, tokenizer, prompts, max_new_tokens=length)
        samples = [
            s for s in (calib.encode_pair(tokenizer, p["prompt"], p["response"], length) for p in pairs) if s
        ]
        source = str(options.calibration_prompts)
    else:
        path = Path(options.calibration) if options.calibration else calib.default_calibration_path()
        samples = calib.encode_pairs(
            tokenizer, calib.load_pairs(path), samples=n, max_length=length, seed=seed
        )
        model, source = None, str(path)
    if not samples:
        raise calib.CalibrationError(
            "no usable calibration sample (every response was empty or truncated away)"
        )
    info = {
        "source": source,
        "generated": bool(options.calibration_prompts),
        "sha256": sha256_file(source),
        "samples": len(samples),
        "response_tokens": int(sum(int((s.labels != calib.IGNORE_INDEX).sum()) for s in samples)),
    }
    if model is None and need_model:
        model = model_factory()
    return model, samples, {**info, "pad_token_id": _pad_id(tokenizer)}


def _pad_id(tokenizer: Any) -> int:
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return int(pad) if pad is not None else 0


def actsvd_reference_projections(
    base: Path,
    finetuned: LoraAdapter,
    reference: dict[str, torch.Tensor],
    options: RealignOptions,
    *,
    progress: bool = True,
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Block-sequential ActSVD of the reference factors on base + reference adapter (spec §1.4b).

    Plain LoRA adapters run one decoder block in memory (``lora_blockwise``); DoRA or fan-in-fan-out
    adapters load the whole PEFT model (``actsvd_projections``).
    """
    from mlflow_nlsr.pipeline.lora_blockwise import blockwise_projections, supports_blockwise

    device = resolve_device(options.device)
    dtype = resolve_dtype(options.dtype, device)
    ref_tensors = {**finetuned.tensors, **reference}
    blockwise = supports_blockwise(finetuned.config)

    def factory() -> Any:
        return load_adapted_model(base, finetuned.config, ref_tensors, device, dtype)

    model, samples, info = _calibration_samples(base, factory, options, need_model=not blockwise)
    batches = make_batches(samples, CALIBRATION_BATCH_SIZE, info.pop("pad_token_id"))
    if blockwise:
        del model
        projected = blockwise_projections(
            base, ref_tensors, batches, sparsity=options.sparsity, variant=options.variant,
            scaling=finetuned.scaling, device=device, dtype=dtype, progress=progress,
        )
    else:
        projected = actsvd_projections(
            model, batches, sparsity=options.sparsity, variant=options.variant, progress=progress
        )
        del model
    meta = {"device": str(device), "dtype": dtype_name(dtype), "blockwise": blockwise}
    return projected, {**info, **meta}


__all__ = [
    "BlockInputs",
    "actsvd_projections",
    "actsvd_reference_projections",
    "block_grams",
    "capture_block_inputs",
    "decoder_blocks",
    "lora_factors",
    "make_batches",
    "run_block",
]
