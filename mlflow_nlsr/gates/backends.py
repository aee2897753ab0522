"""Gate backends: what builds the lm-eval ``LM`` a gate run evaluates (``backend:`` in the gate config).

One :class:`GateBackend` per engine, found through the ``mlflow_nlsr.gate_backends`` entry-point group
(``extensions.ExtensionPoint``). ``hf`` is built in (lm-eval's ``HFLM``: transformers ``generate``); the
``vllm`` backend ships as the separately installable plugin ``plugins/mlflow-nlsr-vllm`` (lm-eval's
``vllm`` model type). A backend receives a :class:`GateTarget` (model dir, optional PEFT adapter,
device, dtype, batch size) and its own options from the gate config (``backend_options:``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlflow_nlsr.errors import ConfigError, InputError
from mlflow_nlsr.extensions import ExtensionPoint
from mlflow_nlsr.placement import placement

#: on CPU ``batch_size: auto`` means this many prompts per batch (docs/performance.md, gate throughput)
CPU_AUTO_BATCH = 16
#: backends that live in a plugin of this repository: the install command named when one is missing
PLUGIN_INSTALL = {
    "vllm": "pip install -e plugins/mlflow-nlsr-vllm (and vLLM itself: pip install vllm)",
}


@dataclass(frozen=True)
class GateTarget:
    """The model one gate run evaluates and where it runs.

    Attributes:
        model_dir: a Hugging Face checkpoint dir (the base when `adapter` is given).
        adapter: a PEFT LoRA adapter dir on `model_dir`, or None.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (``options.DEVICE_HELP``).
        dtype: ``auto``, ``bfloat16``, ``float16`` or ``float32``.
        batch_size: prompts per batch, or ``"auto"``.
        tokenizer: an already-loaded tokenizer to use, or None.

    """

    model_dir: Path
    adapter: Path | None = None
    device: str = "auto"
    dtype: str = "auto"
    batch_size: int | str = 8
    tokenizer: Any = None

    def adapter_rank(self) -> int | None:
        """The LoRA rank ``r`` of the adapter (from its adapter_config.json), or None without one."""
        if self.adapter is None:
            return None
        config = json.loads((Path(self.adapter) / "adapter_config.json").read_text())
        ranks = [int(config.get("r") or 0), *map(int, (config.get("rank_pattern") or {}).values())]
        return max(ranks)


class GateBackend:
    """Builds the lm-eval ``LM`` of a gate run. Subclasses set `name` and implement :meth:`build`.

    Args:
        **options: the gate config's ``backend_options`` (engine arguments).

    """

    name = ""

    def __init__(self, **options: Any) -> None:
        self.options = dict(options)

    def build(self, target: GateTarget) -> Any:
        """Return an lm-eval ``LM`` for `target`."""
        raise NotImplementedError

    def describe(self, target: GateTarget) -> dict[str, Any]:
        """What ran, for metrics.json: the backend name and its resolved settings."""
        return {"backend": self.name, "backend_options": dict(self.options)}


BACKENDS: ExtensionPoint[GateBackend] = ExtensionPoint(
    "mlflow_nlsr.gate_backends", "gate backend", GateBackend
)


def create_backend(name: str, options: dict[str, Any] | None = None) -> GateBackend:
    """The backend `name` with `options`; a missing plugin backend names its install command."""
    if name in PLUGIN_INSTALL and name not in BACKENDS.names():
        raise ConfigError(f"gate backend {name!r} is not installed: {PLUGIN_INSTALL[name]}")
    return BACKENDS.create(name, **dict(options or {}))


class HFBackend(GateBackend):
    """lm-eval's ``HFLM`` (transformers ``generate``) on the target's device and dtype.

    ``batch_size: auto`` lets lm-eval find the largest batch that fits on a GPU and means
    ``CPU_AUTO_BATCH`` on the CPU. Extra options go to ``HFLM`` unchanged (e.g. ``max_length``).
    """

    name = "hf"

    def batch_size(self, target: GateTarget, device: str) -> int | str:
        """The batch size HFLM gets: ``auto`` on a GPU, CPU_AUTO_BATCH for ``auto`` on the CPU."""
        if target.batch_size != "auto":
            return int(target.batch_size)
        return "auto" if device.startswith("cuda") else CPU_AUTO_BATCH

    def build(self, target: GateTarget) -> Any:
        """``HFLM(pretrained=model_dir, peft=adapter, device, dtype, batch_size, **options)``."""
        from lm_eval.models.huggingface import HFLM

        if not Path(target.model_dir).is_dir():
            raise InputError(f"model dir {target.model_dir} does not exist (expected a Hugging Face "
                             "checkpoint folder)")
        device, dtype = placement(target.device, target.dtype)
        kwargs: dict[str, Any] = {"peft": str(target.adapter)} if target.adapter is not None else {}
        if target.tokenizer is not None:
            kwargs["tokenizer"] = target.tokenizer
        return HFLM(pretrained=str(target.model_dir), device=device, dtype=dtype,
                    batch_size=self.batch_size(target, device), **kwargs, **self.options)

    def describe(self, target: GateTarget) -> dict[str, Any]:
        """Backend, resolved device/dtype and batch size."""
        device, dtype = placement(target.device, target.dtype)
        return {**super().describe(target), "device": device, "dtype": dtype,
                "batch_size": self.batch_size(target, device)}


__all__ = ["BACKENDS", "GateBackend", "GateTarget", "HFBackend", "create_backend"]
