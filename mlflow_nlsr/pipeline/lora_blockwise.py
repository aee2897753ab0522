"""Block-sequential ActSVD of LoRA factors with one decoder block in memory (spec §1.4b, depth-independent).

The same computation as ``activations.actsvd_projections`` (which loads the whole PEFT model) on a
``blockwise.BlockStream``: each block is materialised from the base checkpoint with the reference adapter
merged into its weights (``W + scaling·B@A``), so no PEFT wrapper is built. For a targeted module with
input Gram ``G = XᵀX``, lora_A's input Gram is ``G`` and lora_B's (the input of B is ``X Aᵀ``) is
``A G Aᵀ``, computed in float64. After the block's factors are projected, its weights are merged again
with the projected factors and the block is replayed to carry the hidden states to the next block, so
later blocks are calibrated on the already-projected earlier ones, exactly as before.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from mlflow_nlsr import core
from mlflow_nlsr.errors import CalibrationError
from mlflow_nlsr.io.adapters import key_a, key_b
from mlflow_nlsr.io.safetensors_io import LazyCheckpoint
from mlflow_nlsr.pipeline.blockwise import BlockStream, block_grams, replay, store_device

_PEFT_PREFIX = "base_model.model."


def supports_blockwise(config: dict[str, Any]) -> bool:
    """Whether an adapter can be merged per block (plain LoRA: no DoRA, no fan-in-fan-out layers)."""
    return not config.get("use_dora") and not config.get("fan_in_fan_out")


class _MergedWeights:
    """Base checkpoint tensors with the (current) reference factors merged into the targeted weights."""

    def __init__(self, base: LazyCheckpoint, factors: dict[str, torch.Tensor], modules: dict[str, str],
                 scaling: float) -> None:
        self.base, self.factors, self.modules, self.scaling = base, factors, modules, scaling

    def __call__(self, key: str) -> torch.Tensor:
        weight = self.base.get(key)
        module = self.modules.get(key.removesuffix(".weight")) if key.endswith(".weight") else None
        if module is None:
            return weight
        a, b = self.factors[key_a(module)].float(), self.factors[key_b(module)].float()
        return (weight.float() + (b @ a) * self.scaling).to(weight.dtype)


def _project_block(prefix: str, modules: dict[str, str], factors: dict[str, torch.Tensor],
                   grams: Any, sparsity: float, variant: str) -> dict[str, torch.Tensor]:
    projected: dict[str, torch.Tensor] = {}
    for name, module in modules.items():
        if not name.startswith(prefix + "."):
            continue
        gram_x = grams.gram(f"{name}.weight")
        a = factors[key_a(module)].float()
        b = factors[key_b(module)].float()
        a64 = a.to(torch.float64)
        gram_b = a64 @ gram_x.to(device=a.device, dtype=torch.float64) @ a64.T
        for key, weight, gram in ((key_a(module), a, gram_x), (key_b(module), b, gram_b)):
            keep = core.kept_rank(min(weight.shape), sparsity, variant)
            projected[key] = core.actsvd_project(weight, gram, keep).cpu()
    return projected


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
        dtype: the precision of the materialised block weights.
        progress: show a progress bar.

    """
    from tqdm.auto import tqdm

    if not batches or not any(bool(b["response"].any()) for b in batches):
        raise CalibrationError("the calibration data holds no response tokens")
    module_names = {k.removesuffix(".lora_A.weight") for k in reference if k.endswith(".lora_A.weight")}
    modules = {m.removeprefix(_PEFT_PREFIX): m for m in module_names}
    factors = dict(reference)
    with LazyCheckpoint(base) as checkpoint:
        merged = _MergedWeights(checkpoint, factors, modules, scaling)
        stream = BlockStream(base, merged, device, dtype)
        hidden = stream.model.config.hidden_size
        states = stream.capture_inputs(batches, store_device(device, batches, hidden, dtype))
        projected: dict[str, torch.Tensor] = {}
        for index in tqdm(range(len(stream)), desc="ActSVD blocks", disable=not progress, unit="block"):
            prefix = stream.block_name(index)
            with stream.block(index) as block:
                targets = {f"{n}.weight": block.get_submodule(n.removeprefix(prefix + "."))
                           for n in modules if n.startswith(prefix + ".")}
                grams = block_grams(block, targets, states, device)
                done = _project_block(prefix, modules, factors, grams, sparsity, variant)
                projected.update(done)
                factors.update(done)
                for name in (n for n in modules if n.startswith(prefix + ".")):
                    weight = block.get_submodule(name.removeprefix(prefix + ".")).get_parameter("weight")
                    weight.copy_(merged(f"{name}.weight").to(device=weight.device, dtype=weight.dtype))
                if index + 1 < len(stream):
                    states = replay(block, states, device, carry=True)
    return projected


__all__ = ["blockwise_projections", "supports_blockwise"]
