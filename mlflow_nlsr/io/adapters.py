"""Read and write PEFT LoRA adapter directories (adapter_config.json + adapter_model.safetensors/.bin)."""

from __future__ import annotations

import json
import math
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from mlflow_nlsr.errors import CorruptCheckpointError, InputError

CONFIG_NAME = "adapter_config.json"
SAFETENSORS_NAME = "adapter_model.safetensors"
BIN_NAME = "adapter_model.bin"
_SUFFIX_A = ".lora_A.weight"
_SUFFIX_B = ".lora_B.weight"


def _natural_key(text: str) -> list[Any]:
    """Sort key that orders ``layers.2`` before ``layers.10``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


@dataclass(frozen=True)
class LoraAdapter:
    """One PEFT LoRA adapter held in memory: its config, every tensor, and its module prefixes."""

    path: Path
    config: dict[str, Any] = field(repr=False)
    r: int
    alpha: float
    scaling: float
    target_modules: tuple[str, ...]
    tensors: dict[str, torch.Tensor] = field(repr=False)
    modules: tuple[str, ...]

    def factor_a(self, module: str) -> torch.Tensor:
        """``lora_A`` weight [r, d_in] of `module` (a prefix from :attr:`modules`)."""
        return self.tensors[module + _SUFFIX_A]

    def factor_b(self, module: str) -> torch.Tensor:
        """``lora_B`` weight [d_out, r] of `module`."""
        return self.tensors[module + _SUFFIX_B]


def key_a(module: str) -> str:
    """Adapter key of the ``lora_A`` weight of `module`."""
    return module + _SUFFIX_A


def key_b(module: str) -> str:
    """Adapter key of the ``lora_B`` weight of `module`."""
    return module + _SUFFIX_B


def lora_scaling(r: int, alpha: float, use_rslora: bool = False) -> float:
    """PEFT's LoRA scaling: alpha/r, or alpha/sqrt(r) with rsLoRA."""
    return alpha / math.sqrt(r) if use_rslora else alpha / r


def _read_config(path: Path) -> dict[str, Any]:
    cfg_path = path / CONFIG_NAME
    if not path.is_dir():
        raise InputError(f"adapter directory {path} does not exist (expected a PEFT LoRA adapter dir)")
    if not cfg_path.is_file():
        raise InputError(f"{cfg_path} is missing: {path} is not a PEFT adapter directory")
    try:
        config = json.loads(cfg_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{cfg_path} is not valid JSON: {exc}") from exc
    if not isinstance(config, dict):
        raise InputError(f"{cfg_path} must hold a JSON object; found {type(config).__name__}")
    peft_type = str(config.get("peft_type", "")).upper()
    if peft_type != "LORA":
        raise InputError(f"{cfg_path}: peft_type must be LORA; found {config.get('peft_type')!r}")
    if config.get("use_dora"):
        raise InputError(f"{cfg_path}: DoRA adapters (use_dora=true) are not supported")
    for key in ("rank_pattern", "alpha_pattern"):
        if config.get(key):
            raise InputError(f"{cfg_path}: per-module {key} is not supported; found {config[key]!r}")
    if not isinstance(config.get("r"), int) or config["r"] < 1:
        raise InputError(f"{cfg_path}: r must be a positive integer; found {config.get('r')!r}")
    return config


def _read_tensors(path: Path) -> tuple[Path, dict[str, torch.Tensor]]:
    st_path, bin_path = path / SAFETENSORS_NAME, path / BIN_NAME
    if st_path.is_file():
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return st_path, load_file(str(st_path))
        except (SafetensorError, OSError, RuntimeError, ValueError) as exc:
            raise CorruptCheckpointError(f"{st_path} is truncated or corrupt: {exc}") from exc
    if bin_path.is_file():
        try:
            data = torch.load(str(bin_path), map_location="cpu", weights_only=True)
        except (OSError, RuntimeError, EOFError, ValueError, KeyError, pickle.UnpicklingError) as exc:
            raise CorruptCheckpointError(f"{bin_path} is truncated or corrupt: {exc}") from exc
        if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
            raise CorruptCheckpointError(f"{bin_path} must hold a dict of tensors")
        return bin_path, dict(data)
    raise InputError(f"{path} holds neither {SAFETENSORS_NAME} nor {BIN_NAME}")


def _check_finite(file: Path, tensors: dict[str, torch.Tensor]) -> None:
    for name in sorted(tensors):
        t = tensors[name]
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise CorruptCheckpointError(f"{file}: tensor {name} holds NaN or Inf values")


def read_adapter(path: str | Path) -> LoraAdapter:
    """Read a PEFT LoRA adapter dir; raise InputError/CorruptCheckpointError naming the bad file."""
    path = Path(path)
    config = _read_config(path)
    file, tensors = _read_tensors(path)
    _check_finite(file, tensors)
    tensors = {_normalise_key(k): v for k, v in tensors.items()}
    modules = sorted({k[: -len(_SUFFIX_A)] for k in tensors if k.endswith(_SUFFIX_A)}, key=_natural_key)
    if not modules:
        raise InputError(f"{file} holds no LoRA factors (no key ending in {_SUFFIX_A})")
    r = int(config["r"])
    for module in modules:
        a, b = tensors[module + _SUFFIX_A], tensors.get(module + _SUFFIX_B)
        if b is None:
            raise InputError(f"{file}: {module + _SUFFIX_A} has no matching {module + _SUFFIX_B}")
        if a.dim() != 2 or b.dim() != 2 or a.shape[0] != r or b.shape[1] != r:
            raise InputError(
                f"{file}: {module} must have lora_A [r={r}, d_in] and lora_B [d_out, r={r}]; "
                f"found A {tuple(a.shape)} and B {tuple(b.shape)}"
            )
    orphans = sorted(k[: -len(_SUFFIX_B)] for k in tensors if k.endswith(_SUFFIX_B))
    missing_a = [m for m in orphans if m + _SUFFIX_A not in tensors]
    if missing_a:
        raise InputError(f"{file}: {missing_a[0] + _SUFFIX_B} has no matching {missing_a[0] + _SUFFIX_A}")
    alpha = float(config.get("lora_alpha", r))
    targets = config.get("target_modules") or []
    targets = (targets,) if isinstance(targets, str) else tuple(sorted(targets))
    return LoraAdapter(
        path=path,
        config=config,
        r=r,
        alpha=alpha,
        scaling=lora_scaling(r, alpha, bool(config.get("use_rslora"))),
        target_modules=targets,
        tensors=tensors,
        modules=tuple(modules),
    )


def _normalise_key(key: str) -> str:
    """Drop a PEFT adapter-name segment (``lora_A.default.weight`` -> ``lora_A.weight``)."""
    return re.sub(r"\.(lora_[AB])\.[^.]+\.weight$", r".\1.weight", key)


def write_adapter(path: str | Path, config: dict[str, Any], tensors: dict[str, torch.Tensor]) -> Path:
    """Write adapter_config.json + adapter_model.safetensors deterministically (sorted keys)."""
    from safetensors.torch import save_file

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    ordered = {k: tensors[k].detach().to("cpu").contiguous() for k in sorted(tensors)}
    save_file(ordered, str(path / SAFETENSORS_NAME), metadata={"format": "pt"})
    (path / CONFIG_NAME).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return path
