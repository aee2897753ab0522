"""Where a job runs: the ``device`` and ``dtype`` options resolved to torch objects (realign, ActSVD, gates).

``auto`` means the first CUDA device when there is one (else the CPU) and bfloat16 on GPUs that support
it (float16 on older GPUs, float32 on the CPU). A leaf helper used by options, pipeline/ and gates/;
torch is imported only to resolve.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mlflow_nlsr.errors import ConfigError

if TYPE_CHECKING:
    import torch

DEVICE_HELP = "auto (the first CUDA device if there is one, else cpu), cpu, cuda or cuda:N."
DTYPE_HELP = ("auto (bfloat16 on GPUs that support it, float16 on older GPUs, float32 on CPU), bfloat16, "
              "float16 or float32.")
DTYPE_NAMES = ("bfloat16", "float16", "float32")


def check_device(device: str) -> str:
    """`device` if it is auto, cpu, cuda or cuda:N; else a ConfigError (no GPU is probed here)."""
    head, _, index = str(device).partition(":")
    if device in ("auto", "cpu", "cuda") or (head == "cuda" and index.isdigit()):
        return device
    raise ConfigError(f"device must be {DEVICE_HELP[:-1]}; got {device!r}")


def check_dtype(dtype: str) -> str:
    """`dtype` if it is auto or one of DTYPE_NAMES; else a ConfigError."""
    if dtype != "auto" and dtype not in DTYPE_NAMES:
        raise ConfigError(f"dtype must be one of auto, {', '.join(DTYPE_NAMES)}; got {dtype!r}")
    return dtype


def resolve_device(device: str) -> torch.device:
    """Torch device: "auto" is the first CUDA device if there is one, else cpu; "cuda[:N]" needs that GPU."""
    import torch

    check_device(device)
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
    import torch

    if dtype == "auto":
        if device.type != "cuda":
            return torch.float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    check_dtype(dtype)
    return {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}[dtype]


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
