"""Loading the base model, its tokenizer and a LoRA adapter on top of it; module order of the model."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Any

import torch

from mlflow_nlsr.errors import InputError
from mlflow_nlsr.io.adapters import write_adapter
from mlflow_nlsr.placement import dtype_name, resolve, resolve_device, resolve_dtype

_PEFT_PREFIX = "base_model.model."
__all__ = ["dtype_name", "load_adapted_model", "load_tokenizer", "module_order", "resolve", "resolve_device",
           "resolve_dtype"]


def load_tokenizer(base: str | Path) -> Any:
    """The base model's tokenizer (local files only)."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(base), local_files_only=True)
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot load a tokenizer from base model dir {base}: {exc}") from exc


def load_adapted_model(
    base: str | Path, config: dict[str, Any], tensors: dict[str, torch.Tensor], device: torch.device,
    dtype: torch.dtype | None = None,
) -> Any:
    """Base model + the given LoRA tensors as a PEFT model in eval mode (`dtype`: ``resolve_dtype`` auto)."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    dtype = dtype or resolve_dtype("auto", device)
    try:
        model = AutoModelForCausalLM.from_pretrained(str(base), dtype=dtype, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot load base model {base}: {exc}") from exc
    with tempfile.TemporaryDirectory(prefix="nlsr-adapter-") as tmp:
        write_adapter(tmp, {**config, "inference_mode": True}, tensors)
        peft_model = PeftModel.from_pretrained(model, tmp, is_trainable=False)
    return peft_model.to(device).eval()


def _natural_key(text: str) -> list[Any]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def module_order(base: str | Path, modules: list[str] | tuple[str, ...]) -> list[str]:
    """`modules` in the model's own definition order (PEFT named_parameters order; natural sort fallback)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    fallback = sorted(modules, key=_natural_key)
    try:
        config = AutoConfig.from_pretrained(str(base), local_files_only=True)
        with torch.device("meta"):
            skeleton = AutoModelForCausalLM.from_config(config)
    except (OSError, ValueError, KeyError, ImportError, RuntimeError):
        return fallback
    index = {name: i for i, (name, _) in enumerate(skeleton.named_modules())}
    positions = {}
    for module in modules:
        name = module[len(_PEFT_PREFIX) :] if module.startswith(_PEFT_PREFIX) else module
        if name not in index:
            return fallback
        positions[module] = index[name]
    return sorted(modules, key=lambda m: positions[m])
