"""Loading the base model, its tokenizer and a LoRA adapter on top of it; module order of the model."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Any

import torch

from mlflow_nlsr.errors import ConfigError, InputError
from mlflow_nlsr.io.adapters import write_adapter

_PEFT_PREFIX = "base_model.model."
DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


def resolve_device(device: str) -> torch.device:
    """Torch device: "auto" is the first CUDA device if there is one, else cpu; "cuda[:N]" needs that GPU."""
    if device == "auto":
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {device} was requested but no CUDA device is available; "
                              "use --device cpu (or auto)")
        index = torch.device(device).index
        if index is not None and index >= torch.cuda.device_count():
            raise ConfigError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) present")
    return torch.device(device)


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """Torch dtype: "auto" is bfloat16 on a GPU that supports it (float16 on older GPUs), float32 on CPU."""
    if dtype == "auto":
        if device.type != "cuda":
            return torch.float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if dtype not in DTYPES:
        raise ConfigError(f"dtype must be one of auto, {', '.join(DTYPES)}; got {dtype!r}")
    return DTYPES[dtype]


def dtype_name(dtype: torch.dtype) -> str:
    """"bfloat16" for torch.bfloat16 (the name recorded in reports and tags)."""
    return str(dtype).removeprefix("torch.")


def resolve(device: str, dtype: str) -> tuple[torch.device, torch.dtype]:
    """``(resolve_device(device), resolve_dtype(dtype, that device))``."""
    resolved = resolve_device(device)
    return resolved, resolve_dtype(dtype, resolved)


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
