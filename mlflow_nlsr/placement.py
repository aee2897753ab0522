"""Where a job runs: the ``device`` and ``dtype`` options resolved to torch objects (realign, ActSVD, gates).

``auto`` means the first CUDA device when there is one (else the CPU) and bfloat16 on GPUs that support
it (float16 on older GPUs, float32 on the CPU). A leaf helper: pipeline/ and gates/ both use it.
"""

from __future__ import annotations

import torch

from mlflow_nlsr.errors import ConfigError

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


def placement(device: str, dtype: str) -> tuple[str, str]:
    """``(device, dtype)`` resolved to the names recorded in reports and tags (``cuda:0``, ``bfloat16``)."""
    resolved_device, resolved_dtype = resolve(device, dtype)
    return str(resolved_device), dtype_name(resolved_dtype)
