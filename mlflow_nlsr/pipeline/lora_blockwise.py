"""Block-sequential ActSVD of LoRA factors with one decoder block in memory (spec §1.4b, depth-independent).

The same computation as ``activations.actsvd_projections`` (which loads the whole PEFT model) on a
``blockwise.BlockStream``: each block is materialised from the base checkpoint and its targeted Linears
are wrapped with the reference factors, computed in PEFT's order (``base(x) + B(A(x))·scaling``), so the
Gram matrices of every factor's inputs, the projections and the carried hidden states are those of the
whole-model path, bit for bit on the CPU. After the block's factors are projected in place the block is
replayed to carry the hidden states to the next block, so later blocks are calibrated on the
already-projected earlier ones.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from mlflow_nlsr import core
from mlflow_nlsr.errors import CalibrationError
from mlflow_nlsr.io.adapters import key_a, key_b
from mlflow_nlsr.io.safetensors_io import LazyCheckpoint
from mlflow_nlsr.pipeline.activations import _gram_hooks
from mlflow_nlsr.pipeline.blockwise import BlockStream, replay, store_device

_PEFT_PREFIX = "base_model.model."


def supports_blockwise(config: dict[str, Any]) -> bool:
    """Whether an adapter can be merged per block (plain LoRA: no DoRA, no fan-in-fan-out layers)."""
    return not config.get("use_dora") and not config.get("fan_in_fan_out")


class _LoraLinear(nn.Module):
    """A base Linear plus its LoRA factors, computed in PEFT's order (so results match PEFT bit for bit)."""

    def __init__(self, base: nn.Module, a: torch.Tensor, b: torch.Tensor, scaling: float) -> None:
        super().__init__()
        self.base_layer, self.scaling = base, scaling
        self.lora_A = nn.Linear(a.shape[1], a.shape[0], bias=False, device=a.device, dtype=a.dtype)
        self.lora_B = nn.Linear(b.shape[1], b.shape[0], bias=False, device=b.device, dtype=b.dtype)
        self.lora_A.weight.data.copy_(a)
        self.lora_B.weight.data.copy_(b)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``base(x) + lora_B(lora_A(x)) * scaling`` (PEFT's LoraLayer forward without dropout)."""
        result = self.base_layer(x)
        result_dtype = result.dtype
        lora_in = x.to(self.lora_A.weight.dtype)
        return (result + self.lora_B(self.lora_A(lora_in)) * self.scaling).to(result_dtype)


def _attach(block: nn.Module, prefix: str, modules: dict[str, str], reference: dict[str, torch.Tensor],
            scaling: float, device: torch.device) -> dict[str, nn.Linear]:
    """Wrap the block's targeted Linears with their reference factors (float32, as PEFT keeps them)."""
    factors: dict[str, nn.Linear] = {}
    for name, module in modules.items():
        if not name.startswith(prefix + "."):
            continue
        local = name.removeprefix(prefix + ".")
        parent_name, _, leaf = local.rpartition(".")
        parent = block.get_submodule(parent_name) if parent_name else block
        a = reference[key_a(module)].to(device=device, dtype=torch.float32)
        b = reference[key_b(module)].to(device=device, dtype=torch.float32)
        wrapped = _LoraLinear(getattr(parent, leaf), a, b, scaling)
        setattr(parent, leaf, wrapped)
        factors[key_a(module)], factors[key_b(module)] = wrapped.lora_A, wrapped.lora_B
    return factors


@torch.no_grad()
def blockwise_projections(base: str | Path, reference: dict[str, torch.Tensor],
                          batches: list[dict[str, torch.Tensor]], *, sparsity: float, variant: str,
                          scaling: float, device: torch.device, dtype: torch.dtype = torch.float32,
                          progress: bool = True) -> dict[str, torch.Tensor]:
    """Project every reference LoRA factor, one decoder block in memory; return {adapter key: CPU tensor}.

    Args:
        base: the base model dir (safetensors checkpoint, read tensor by tensor).
        reference: the reference factors {``…lora_A.weight``: [r, d_in], ``…lora_B.weight``: [d_out, r]}.
        batches: ``activations.make_batches`` output.
        sparsity: P_SR, with `variant` the kept rank of each factor (``core.kept_rank``).
        variant: "official" or "paper".
        scaling: the adapter's LoRA scaling.
        device: where the blocks run and the Grams (float64) accumulate.
        dtype: the precision of the base weights (the factors stay float32, as in PEFT).
        progress: show a progress bar.

    """
    from tqdm.auto import tqdm

    if not batches or not any(bool(b["response"].any()) for b in batches):
        raise CalibrationError("the calibration data holds no response tokens")
    module_names = {k.removesuffix(".lora_A.weight") for k in reference if k.endswith(".lora_A.weight")}
    modules = {m.removeprefix(_PEFT_PREFIX): m for m in module_names}
    projected: dict[str, torch.Tensor] = {}
    state: dict[str, Any] = {}  # the response mask of the batch being replayed, read by the Gram hooks

    def before(batch: Any) -> None:
        state["response"] = batch.response

    with LazyCheckpoint(base) as checkpoint:
        stream = BlockStream(base, checkpoint.get, device, dtype)
        hidden = stream.model.config.hidden_size
        states = stream.capture_inputs(batches, store_device(device, batches, hidden, dtype))
        for index in tqdm(range(len(stream)), desc="ActSVD blocks", disable=not progress, unit="block"):
            prefix = stream.block_name(index)
            with stream.block(index) as block:
                factors = _attach(block, prefix, modules, reference, scaling, device)
                grams: dict[str, torch.Tensor] = {}
                with _gram_hooks(factors, grams, state):
                    replay(block, states, device, before=before)
                for key, linear in factors.items():
                    d_out, d_in = linear.weight.shape
                    keep = core.kept_rank(min(d_out, d_in), sparsity, variant)
                    new = core.actsvd_project(linear.weight.detach().float(), grams[key], keep)
                    linear.weight.data.copy_(new.to(linear.weight.dtype))
                    projected[key] = new.cpu()
                if index + 1 < len(stream):
                    states = replay(block, states, device, carry=True)
    return projected


__all__ = ["blockwise_projections", "supports_blockwise"]
