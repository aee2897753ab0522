"""Checks that the inputs agree and that the fine-tuned adapter continues the aligned one (spec §1.2)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from mlflow_nlsr.errors import IncompatibleModelsError, InputError, NotAContinuationError
from mlflow_nlsr.io.adapters import LoraAdapter, key_a, key_b
from mlflow_nlsr.io.safetensors_io import INDEX_NAME, SINGLE_NAME, LazyCheckpoint

#: mean factor cosine below which the fine-tuned adapter is taken NOT to continue the aligned one
CONTINUATION_THRESHOLD = 0.5
_PEFT_PREFIX = "base_model.model."


def _base_weight_key(module: str, ckpt: LazyCheckpoint) -> str | None:
    """The base checkpoint key of the linear layer that adapter `module` targets, if found."""
    stripped = module[len(_PEFT_PREFIX) :] if module.startswith(_PEFT_PREFIX) else module
    for candidate in (stripped, module, stripped.removeprefix("model."), "model." + stripped):
        if candidate + ".weight" in ckpt:
            return candidate + ".weight"
    return None


def _check_against_base(base_dir: Path, adapter: LoraAdapter) -> None:
    if not (base_dir / INDEX_NAME).is_file() and not (base_dir / SINGLE_NAME).is_file():
        return  # a .bin-only base: shapes are checked when the model is loaded
    with LazyCheckpoint(base_dir) as ckpt:
        for module in adapter.modules:
            weight_key = _base_weight_key(module, ckpt)
            if weight_key is None:
                raise IncompatibleModelsError(
                    f"adapter {adapter.path} targets {module}, which base model {base_dir} does not have"
                )
            shape = ckpt.shape(weight_key)
            a, b = adapter.factor_a(module), adapter.factor_b(module)
            if len(shape) != 2 or a.shape[1] != shape[1] or b.shape[0] != shape[0]:
                raise IncompatibleModelsError(
                    f"{key_a(module)}/{key_b(module)} of {adapter.path}: expected A [r, {shape[-1]}] and "
                    f"B [{shape[0]}, r] for base weight {weight_key} {tuple(shape)}; "
                    f"found A {tuple(a.shape)} and B {tuple(b.shape)}"
                )


def check_compatible(base_dir: str | Path, aligned: LoraAdapter, finetuned: LoraAdapter) -> None:
    """Raise IncompatibleModelsError naming the first mismatch (targets, rank, keys, shapes, base shapes)."""
    base_dir = Path(base_dir)
    if not (base_dir / "config.json").is_file():
        raise InputError(f"base model dir {base_dir} has no config.json (expected a Hugging Face model dir)")
    try:
        json.loads((base_dir / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"{base_dir / 'config.json'} is not valid JSON: {exc}") from exc
    if aligned.target_modules != finetuned.target_modules:
        raise IncompatibleModelsError(
            f"target_modules differ: aligned {list(aligned.target_modules)}, "
            f"fine-tuned {list(finetuned.target_modules)}"
        )
    if aligned.r != finetuned.r:
        raise IncompatibleModelsError(f"LoRA ranks differ: aligned r={aligned.r}, fine-tuned r={finetuned.r}")
    if aligned.scaling != finetuned.scaling:
        raise IncompatibleModelsError(
            f"LoRA scaling differs: aligned {aligned.scaling}, fine-tuned {finetuned.scaling} (lora_alpha/r)"
        )
    keys_a, keys_t = set(aligned.tensors), set(finetuned.tensors)
    if keys_a != keys_t:
        only_a, only_t = sorted(keys_a - keys_t), sorted(keys_t - keys_a)
        first = (
            f"{only_a[0]} is only in the aligned adapter"
            if only_a
            else f"{only_t[0]} is only in the fine-tuned adapter"
        )
        raise IncompatibleModelsError(f"adapters hold different tensors: {first}")
    for key in sorted(keys_a):
        sa, st = tuple(aligned.tensors[key].shape), tuple(finetuned.tensors[key].shape)
        if sa != st:
            raise IncompatibleModelsError(f"tensor {key}: aligned shape {sa} but fine-tuned shape {st}")
    _check_against_base(base_dir, finetuned)


def _cosine(x: torch.Tensor, y: torch.Tensor) -> float:
    x, y = x.double().flatten(), y.double().flatten()
    denom = float(x.norm() * y.norm())
    return float(x @ y) / denom if denom > 0 else 0.0


def continuation_score(aligned: LoraAdapter, finetuned: LoraAdapter) -> float:
    """Mean over modules of (cos(vec A_t, vec A_a) + cos(vec B_t, vec B_a)) / 2; ~1 continued, ~0 fresh."""
    scores = [
        0.5 * _cosine(finetuned.factor_a(m), aligned.factor_a(m))
        + 0.5 * _cosine(finetuned.factor_b(m), aligned.factor_b(m))
        for m in finetuned.modules
    ]
    return sum(scores) / len(scores)


def check_continuation(aligned: LoraAdapter, finetuned: LoraAdapter, force: bool = False) -> float:
    """Return the continuation score; raise NotAContinuationError below the threshold unless `force`."""
    score = continuation_score(aligned, finetuned)
    if score < CONTINUATION_THRESHOLD and not force:
        raise NotAContinuationError(
            f"the fine-tuned adapter {finetuned.path} does not continue the aligned adapter {aligned.path}: "
            f"mean cosine of their LoRA factors is {score:.3f} (expected >= {CONTINUATION_THRESHOLD}). "
            "NLSR compares and transplants individual LoRA factor entries, which only share a meaning when "
            "the fine-tuned adapter was trained by resuming the aligned adapter (spec §1.2); on a fresh LoRA "
            "the result is meaningless. Use the full-weight mode for a fresh LoRA, "
            "or pass --force to run anyway."
        )
    return score
