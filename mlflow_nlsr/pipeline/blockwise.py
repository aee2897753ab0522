"""Calibration passes one decoder block at a time: memory independent of the model's depth.

The way sequential quantisers (GPTQ, llm-compressor) do it: the model is built on the ``meta`` device
(no memory), only what runs before the first block (embeddings, rotary tables) is materialised, the
calibration batches are run up to block 0 and what enters it is kept; then each block in turn is
materialised from a tensor source, replayed on the stored hidden states (Gram matrices collected by
hooks), handed to a callback, replayed again to carry the hidden states to the next block, and freed.
Peak memory is one block's weights + the embeddings + the hidden states of the calibration batches
(kept on the CPU between blocks when the device is a GPU and they would crowd it).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mlflow_nlsr.errors import ConfigError, InputError

#: a tensor source: checkpoint name (e.g. ``model.layers.3.mlp.down_proj.weight``) -> CPU tensor
TensorFn = Callable[[str], torch.Tensor]
#: hidden states larger than this fraction of the free GPU memory are kept on the CPU between blocks
OFFLOAD_FRACTION = 0.25


class _StopForward(Exception):
    """Raised by the block-0 pre-hook once its inputs are captured."""


@dataclass
class BlockInputs:
    """What enters a decoder block for one batch: positional args, kwargs, and the response-token mask."""

    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    response: torch.Tensor  # bool [batch, T]

    def hidden(self) -> torch.Tensor:
        """The hidden states entering the block."""
        return self.args[0] if self.args else self.kwargs["hidden_states"]

    def with_hidden(self, hidden: torch.Tensor) -> BlockInputs:
        """A copy carrying `hidden` instead of the current hidden states."""
        if self.args:
            return BlockInputs((hidden, *self.args[1:]), self.kwargs, self.response)
        return BlockInputs(self.args, {**self.kwargs, "hidden_states": hidden}, self.response)

    def to(self, device: torch.device | str) -> BlockInputs:
        """Every tensor moved to `device`."""
        return BlockInputs(_to(self.args, device), _to(self.kwargs, device), self.response.to(device))


def _to(value: Any, device: torch.device | str) -> Any:
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, tuple):
        return tuple(_to(v, device) for v in value)
    if isinstance(value, dict):
        return {k: _to(v, device) for k, v in value.items()}
    return value


def run_block(block: nn.Module, inputs: BlockInputs) -> torch.Tensor:
    """One block forward on stored inputs; returns the hidden states (tensor or first tuple item)."""
    out = block(*inputs.args, **inputs.kwargs)
    return out[0] if isinstance(out, (tuple, list)) else out


def _longest_module_list(model: nn.Module) -> tuple[str, nn.ModuleList]:
    best: tuple[str, nn.ModuleList] | None = None
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) > (len(best[1]) if best else 0):
            best = (name, module)
    if best is None:
        raise InputError("could not find the decoder blocks (no ModuleList) in the model")
    return best


def _materialise(module: nn.Module, name: str, tensors: TensorFn, device: torch.device, dtype: torch.dtype,
                 recurse: bool) -> None:
    """Give `module`'s own parameters and persistent buffers real storage on `device`, read from `tensors`."""
    for pname, param in list(module.named_parameters(recurse=recurse)):
        value = tensors(f"{name}.{pname}" if name else pname)
        owner, leaf = _owner(module, pname)
        target = dtype if param.is_floating_point() else param.dtype
        owner._parameters[leaf] = nn.Parameter(value.to(device=device, dtype=target), requires_grad=False)
    for bname, buffer in list(module.named_buffers(recurse=recurse)):
        owner, leaf = _owner(module, bname)
        if leaf in owner._non_persistent_buffers_set:
            _rebuild_computed_buffers(owner, device)
            continue
        owner._buffers[leaf] = tensors(f"{name}.{bname}" if name else bname).to(device=device,
                                                                                 dtype=buffer.dtype)


def _owner(module: nn.Module, dotted: str) -> tuple[nn.Module, str]:
    *path, leaf = dotted.split(".")
    for part in path:
        module = getattr(module, part)
    return module, leaf


def _rebuild_computed_buffers(module: nn.Module, device: torch.device) -> None:
    """Non-persistent buffers (rotary tables) are computed at init: build the module again on `device`."""
    config = getattr(module, "config", None)
    if config is None:
        raise ConfigError(f"{type(module).__name__} holds computed buffers and no config; the block-by-block "
                          "calibration cannot rebuild it (this architecture is not supported)")
    with torch.device(device):
        fresh = type(module)(config)
    for key, value in fresh._buffers.items():
        module._buffers[key] = value
    for key in ("attention_scaling",):
        if hasattr(fresh, key):
            setattr(module, key, getattr(fresh, key))


def release_freed_memory() -> None:
    """Hand freed heap pages back to the OS (glibc keeps block-sized frees; elsewhere a no-op)."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if name and "libc" in name:
        with suppress(OSError, AttributeError):
            ctypes.CDLL(name).malloc_trim(0)


class BlockStream:
    """A causal LM skeleton whose decoder blocks are materialised one at a time from `tensors`.

    Args:
        config_dir: a model dir with config.json (the architecture).
        tensors: checkpoint name -> tensor (the weights the pass runs on).
        device: where blocks run and Gram matrices accumulate.
        dtype: the floating dtype of the materialised weights.

    """

    def __init__(self, config_dir: str | Path, tensors: TensorFn, device: torch.device,
                 dtype: torch.dtype = torch.float32) -> None:
        from transformers import AutoConfig, AutoModelForCausalLM

        config = AutoConfig.from_pretrained(str(config_dir), local_files_only=True)
        with torch.device("meta"):
            self.model = AutoModelForCausalLM.from_config(config, dtype=dtype)
        self.model.eval()
        self.tensors, self.device, self.dtype = tensors, device, dtype
        self.prefix, self.blocks = _longest_module_list(self.model)
        self._skeletons = list(self.blocks)
        head = self.model.get_output_embeddings()
        skip = {id(head)} if head is not None else set()
        for name, module in self.model.named_modules():
            if name == self.prefix or name.startswith(self.prefix + ".") or id(module) in skip:
                continue
            _materialise(module, name, tensors, device, dtype, recurse=False)

    def __len__(self) -> int:
        """Number of decoder blocks."""
        return len(self.blocks)

    def block_name(self, index: int) -> str:
        """Checkpoint prefix of block `index`, e.g. ``model.layers.3``."""
        return f"{self.prefix}.{index}"

    @torch.no_grad()
    def capture_inputs(self, batches: list[dict[str, torch.Tensor]], store: torch.device | str
                       ) -> list[BlockInputs]:
        """Run every batch up to block 0 and keep what enters it (on `store`)."""
        captured: list[BlockInputs] = []
        current: dict[str, Any] = {}

        def hook(_module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            current["args"], current["kwargs"] = args, dict(kwargs)
            raise _StopForward

        handle = self.blocks[0].register_forward_pre_hook(hook, with_kwargs=True)
        try:
            for batch in batches:
                current.clear()
                with suppress(_StopForward):
                    self.model(input_ids=batch["input_ids"].to(self.device),
                               attention_mask=batch["attention_mask"].to(self.device), use_cache=False)
                if "args" not in current:
                    raise InputError("the model's forward never reached its first decoder block")
                captured.append(BlockInputs(current["args"], current["kwargs"], batch["response"]).to(store))
        finally:
            handle.remove()
        return captured

    @contextmanager
    def block(self, index: int) -> Iterator[nn.Module]:
        """Block `index` materialised on the device for the duration of the context, then freed."""
        real = copy.deepcopy(self._skeletons[index])
        _materialise(real, self.block_name(index), self.tensors, self.device, self.dtype, recurse=True)
        self.blocks[index] = real
        try:
            yield real
        finally:
            self.blocks[index] = self._skeletons[index]
            del real
            release_freed_memory()


class GramHooks:
    """Forward pre-hooks adding XᵀX of response-token inputs, one Gram per distinct input tensor.

    Modules that read the same input tensor (q/k/v, gate/up) share one Gram: ``alias[key]`` names the
    module whose Gram `key` uses (found on the first batch by tensor identity). The sums are kept in
    `dtype` (float64 by default; full-weight mode accumulates float32) on the device of the inputs.
    """

    def __init__(self, modules: dict[str, nn.Module], dtype: torch.dtype = torch.float64) -> None:
        self.dtype = dtype
        self.grams: dict[str, torch.Tensor] = {}
        self.alias: dict[str, str] = {}
        self.token_mask: torch.Tensor | None = None
        self._seen: dict[int, tuple[str, torch.Tensor]] = {}  # holds the tensors so ids are not reused
        self._first_batch = True
        self.handles = [m.register_forward_pre_hook(self._hook(k)) for k, m in modules.items()]

    def _hook(self, key: str) -> Callable[..., None]:
        from mlflow_nlsr.core import input_gram

        def hook(_module: nn.Module, args: tuple[Any, ...]) -> None:
            x = args[0]
            if key in self.alias:
                return
            if self._first_batch:
                owner = self._seen.get(id(x))
                if owner is not None and owner[1] is x:
                    self.alias[key] = owner[0]
                    return
                self._seen[id(x)] = (key, x)
            rows = x.reshape(-1, x.shape[-1])
            if self.token_mask is not None:
                rows = rows[self.token_mask.reshape(-1)]
            gram = input_gram(rows, self.dtype)
            if key in self.grams:
                self.grams[key].add_(gram)
            else:
                self.grams[key] = gram

        return hook

    def end_batch(self) -> None:
        """Call after each batch (aliases are decided on the first one)."""
        self._first_batch = False
        self._seen.clear()

    def gram(self, key: str) -> torch.Tensor:
        """The Gram matrix of module `key`'s input (its own or the one it shares)."""
        return self.grams[self.alias.get(key, key)]

    def remove(self) -> None:
        """Remove every hook."""
        for handle in self.handles:
            handle.remove()


@torch.no_grad()
def block_grams(block: nn.Module, modules: dict[str, nn.Module], states: list[BlockInputs],
                device: torch.device, dtype: torch.dtype = torch.float64) -> GramHooks:
    """Replay `block` on `states`; return the hooks holding every module's input Gram (response tokens).

    The Gram sums are kept in `dtype` on `device` (see ``GramHooks``).
    """
    hooks = GramHooks(modules, dtype)

    def before(batch: BlockInputs) -> None:
        if hooks.token_mask is not None:
            hooks.end_batch()
        hooks.token_mask = batch.response

    try:
        replay(block, states, device, before=before)
    finally:
        hooks.remove()
    return hooks


def store_device(device: torch.device, batches: list[dict[str, torch.Tensor]], hidden_size: int,
                 dtype: torch.dtype) -> torch.device:
    """Where hidden states wait between blocks: the device, or the CPU when they would crowd a GPU."""
    if device.type != "cuda":
        return device
    tokens = sum(int(b["input_ids"].numel()) for b in batches)
    need = tokens * hidden_size * torch.tensor([], dtype=dtype).element_size()
    free, _total = torch.cuda.mem_get_info(device)
    return device if need < OFFLOAD_FRACTION * free else torch.device("cpu")


@torch.no_grad()
def replay(block: nn.Module, states: list[BlockInputs], device: torch.device,
           before: Callable[[BlockInputs], None] | None = None, carry: bool = False) -> list[BlockInputs]:
    """Run `block` on every stored batch (moved to `device` for the call); return the carried states.

    `before(batch)` runs ahead of each forward (the Gram hooks read the response mask from it); with
    `carry` the block's outputs replace the hidden states in `states` itself, batch by batch (stored
    where the inputs were), so the old and new hidden states of the whole set are never held together;
    the list is returned.
    """
    for index, state in enumerate(states):
        here = state.to(device)
        if before is not None:
            before(here)
        out = run_block(block, here)
        del here
        if carry:
            states[index] = state.with_hidden(out.to(state.hidden().device))
    return states


__all__ = [
    "BlockInputs",
    "BlockStream",
    "GramHooks",
    "block_grams",
    "release_freed_memory",
    "replay",
    "run_block",
    "store_device",
]
