"""Full-weight inputs read tensor by tensor: HF checkpoints (single or sharded), PEFT adapters merged lazily.

A checkpoint dir is described by its safetensors headers (dtype, shape, shard of every tensor; read by
``io.LazyCheckpoint``) before any tensor data is read, so three inputs can be checked against each other
and the output planned without loading a model. A PEFT LoRA adapter on the base is accepted wherever a
checkpoint is: its tensors are ``W_0 + scaling·B@A`` computed for one tensor at a time, exactly as
``peft``'s ``merge_and_unload`` does.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch

from mlflow_nlsr.errors import IncompatibleModelsError, InputError
from mlflow_nlsr.io.adapters import LoraAdapter, key_a, key_b, read_adapter
from mlflow_nlsr.io.safetensors_io import LazyCheckpoint

_PEFT_PREFIX = "base_model.model."
_PROJECTIONS = re.compile(r"\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)\.weight$")
_BLOCKS = {"layers", "h", "blocks", "layer"}
_NOT_LINEAR = ("norm", "embed", "lm_head", "wte", "wpe", "ln_")
#: config.json fields that must agree between the three inputs (when any of them sets it)
ARCH_FIELDS = ("model_type", "architectures", "hidden_size", "intermediate_size", "num_hidden_layers",
               "num_attention_heads", "num_key_value_heads", "head_dim", "vocab_size", "tie_word_embeddings")


def natural_key(text: str) -> list[Any]:
    """Sort key that orders ``layers.2`` before ``layers.10``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def is_linear_weight(key: str, shape: tuple[int, ...]) -> bool:
    """Whether `key` is a linear projection that NLSR realigns (not an embedding, norm or lm_head)."""
    if len(shape) != 2 or not key.endswith(".weight"):
        return False
    if _PROJECTIONS.search(key):
        return True
    lowered = key.lower()
    return bool(_BLOCKS & set(key.split("."))) and not any(part in lowered for part in _NOT_LINEAR)


def read_config(path: Path) -> dict[str, Any]:
    """The config.json of a model dir; InputError if it is missing or not JSON."""
    file = path / "config.json"
    if not file.is_file():
        raise InputError(f"{path} has no config.json (expected a Hugging Face model dir)")
    try:
        data = json.loads(file.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"{file} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise InputError(f"{file} must hold a JSON object")
    return data


class CheckpointSource(LazyCheckpoint):
    """A HF safetensors checkpoint dir with its config.json: headers up front, tensors on demand.

    Tensors are read with plain reads (``io.LazyCheckpoint``), one shard file open at a time.
    """

    kind = "checkpoint"

    def __init__(self, path: str | Path) -> None:
        """Read config.json and every shard header of `path` (no tensor data)."""
        path = Path(path)
        if not path.is_dir():
            raise InputError(f"model dir {path} does not exist")
        self.config = read_config(path)
        super().__init__(path)


def _base_key(module: str, base: CheckpointSource) -> str | None:
    stripped = module.removeprefix(_PEFT_PREFIX)
    for candidate in (stripped, module, stripped.removeprefix("model."), "model." + stripped):
        if candidate + ".weight" in base.infos:
            return candidate + ".weight"
    return None


class AdapterSource:
    """A PEFT LoRA adapter on `base`, seen as a full checkpoint merged one tensor at a time."""

    kind = "adapter"

    def __init__(self, path: str | Path, base: CheckpointSource) -> None:
        """Read the adapter (small) and map each LoRA module to the base weight it changes."""
        self.path = Path(path)
        self.base = base
        self.adapter: LoraAdapter = read_adapter(self.path)
        self.config = base.config
        self.infos = base.infos
        self.fan_in_fan_out = bool(self.adapter.config.get("fan_in_fan_out", False))
        factors = (".lora_A.weight", ".lora_B.weight")
        extra = sorted(k for k in self.adapter.tensors if not k.endswith(factors))
        if extra:
            raise InputError(f"adapter {self.path} holds tensor {extra[0]}, which is not a LoRA factor "
                             "(modules_to_save or LoRA biases are not supported in full-weight mode)")
        self.modules: dict[str, str] = {}
        for module in self.adapter.modules:
            key = _base_key(module, base)
            if key is None:
                raise IncompatibleModelsError(f"adapter {self.path} targets {module}, which base model "
                                              f"{base.path} does not have")
            shape = base.infos[key].shape
            d_out, d_in = shape if not self.fan_in_fan_out else shape[::-1]
            a, b = self.adapter.factor_a(module), self.adapter.factor_b(module)
            if len(shape) != 2 or a.shape[1] != d_in or b.shape[0] != d_out:
                raise IncompatibleModelsError(
                    f"{key_a(module)}/{key_b(module)} of {self.path}: expected A [r, {d_in}] and "
                    f"B [{d_out}, r] for base weight {key} {list(shape)}; "
                    f"found A {list(a.shape)} and B {list(b.shape)}")
            self.modules[key] = module

    def ordered_keys(self) -> list[str]:
        """Tensor names in the base's storage order."""
        return self.base.ordered_keys()

    def get(self, key: str) -> torch.Tensor:
        """Base tensor `key` plus this adapter's update, as peft's merge computes it (delta in float32)."""
        weight = self.base.get(key)
        module = self.modules.get(key)
        if module is None:
            return weight
        a, b = self.adapter.factor_a(module).float(), self.adapter.factor_b(module).float()
        delta = (b @ a) * self.adapter.scaling
        if self.fan_in_fan_out:
            delta = delta.T
        return weight + delta.to(weight.dtype)

    def close(self) -> None:
        """Release the base's open shard."""
        self.base.close()


Source = CheckpointSource | AdapterSource


def is_adapter_dir(path: str | Path) -> bool:
    """Whether `path` is a PEFT adapter dir (holds adapter_config.json)."""
    return (Path(path) / "adapter_config.json").is_file()


def open_sources(base: str | Path, aligned: str | Path, finetuned: str | Path
                 ) -> tuple[Source, Source, Source]:
    """Open the three inputs (the base must be a checkpoint; the others a checkpoint or an adapter on it)."""
    if is_adapter_dir(base):
        raise InputError(f"base {base} is a PEFT adapter; full-weight mode needs a full base checkpoint")
    w0 = CheckpointSource(base)
    sources: list[Source] = [AdapterSource(p, w0) if is_adapter_dir(p) else CheckpointSource(p)
                             for p in (aligned, finetuned)]
    return w0, sources[0], sources[1]


def validate_sources(base: Source, aligned: Source, finetuned: Source) -> None:
    """Raise IncompatibleModelsError naming the first architecture field, tensor or shape that disagrees."""
    named = (("base", base), ("aligned", aligned), ("fine-tuned", finetuned))
    for field in ARCH_FIELDS:
        values = {name: src.config.get(field) for name, src in named}
        present = {v for v in map(json.dumps, values.values()) if v != "null"}
        if len(present) > 1:
            raise IncompatibleModelsError(f"config.json field {field} differs: " +
                                          ", ".join(f"{n} {v!r}" for n, v in values.items()))
    keys = {name: set(src.infos) for name, src in named}
    every = set.union(*keys.values())
    for key in sorted(every, key=natural_key):
        lacking = [name for name, have in keys.items() if key not in have]
        if lacking:
            holders = [name for name in keys if name not in lacking]
            raise IncompatibleModelsError(f"tensor {key} is missing from the {' and '.join(lacking)} "
                                          f"checkpoint (present in {' and '.join(holders)})")
        shapes = {name: src.infos[key].shape for name, src in named}
        if len(set(shapes.values())) > 1:
            raise IncompatibleModelsError(f"tensor {key} has different shapes: " +
                                          ", ".join(f"{n} {list(s)}" for n, s in shapes.items()))
