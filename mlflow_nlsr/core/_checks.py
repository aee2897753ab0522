"""Shared input checks for core/: each raises the matching NLSRError with expected vs found."""

from __future__ import annotations

import math

import torch

from mlflow_nlsr.errors import ConfigError, IncompatibleModelsError, InputError

VARIANTS = ("official", "paper")


def check_variant(variant: str) -> str:
    """Return ``variant`` if it is "official" or "paper", else raise ConfigError."""
    if variant not in VARIANTS:
        raise ConfigError(f"variant must be one of {VARIANTS}, found {variant!r}")
    return variant


def check_sparsity(sparsity: float) -> float:
    """Return ``sparsity`` as float if 0 <= sparsity < 1 (finite), else raise ConfigError."""
    if isinstance(sparsity, bool) or not isinstance(sparsity, (int, float)):
        raise ConfigError(f"sparsity must be a number in [0, 1), found {sparsity!r}")
    value = float(sparsity)
    if not (math.isfinite(value) and 0.0 <= value < 1.0):
        raise ConfigError(f"sparsity must be in [0, 1), found {sparsity!r}")
    return value


def check_matrix(t: torch.Tensor, name: str) -> torch.Tensor:
    """Return ``t`` if it is a non-empty 2-D tensor, else raise InputError."""
    if not isinstance(t, torch.Tensor) or t.dim() != 2 or t.numel() == 0:
        found = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
        raise InputError(f"{name} must be a non-empty 2-D tensor, found {found}")
    return t


def check_same_shape(x: torch.Tensor, y: torch.Tensor, what: str) -> None:
    """Raise IncompatibleModelsError if ``x`` and ``y`` differ in shape."""
    if x.shape != y.shape:
        raise IncompatibleModelsError(
            f"{what}: shapes must match, found {tuple(x.shape)} and {tuple(y.shape)}"
        )


def check_lora_pair(a: torch.Tensor, b: torch.Tensor, what: str) -> None:
    """Raise if ``a`` [r, d_in] and ``b`` [d_out, r] are not a LoRA factor pair of one rank."""
    check_matrix(a, f"{what} lora_A")
    check_matrix(b, f"{what} lora_B")
    if b.shape[1] != a.shape[0]:
        raise IncompatibleModelsError(
            f"{what}: lora_B [d_out, r] and lora_A [r, d_in] must share r, "
            f"found B {tuple(b.shape)} and A {tuple(a.shape)}"
        )


def check_mask(mask: torch.Tensor, like: torch.Tensor, what: str) -> torch.Tensor:
    """Return ``mask`` as a bool tensor on ``like``'s device if shapes match, else raise."""
    check_same_shape(mask, like, what)
    return mask.to(device=like.device, dtype=torch.bool)
